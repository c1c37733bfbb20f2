/**
 * Test studies built from the WG04 radiograph (../shared/data, a real CR image) with dcmodify:
 * new UIDs for every instance, one study and series UID, and the body part we want to route on.
 */
import { chmod, copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { randomUid } from "@kneegrade/dicom";
import { dumpValue, tool } from "./dcmtk.ts";
import { WG04_DIR, WG04_FILES, type Wg04File } from "./paths.ts";

export const newUid = randomUid;

export interface TestInstance {
  path: string;
  source: Wg04File;
  sopInstanceUid: string;
  /** storescu options that propose this file's transfer syntax. */
  storescuArgs: string[];
}

export interface TestStudy {
  studyInstanceUid: string;
  seriesInstanceUid: string;
  instances: TestInstance[];
}

export async function buildStudy(opts: {
  dir: string;
  sources: Wg04File[];
  bodyPart?: string;
  studyInstanceUid?: string;
  seriesDescription?: string;
}): Promise<TestStudy> {
  const studyInstanceUid = opts.studyInstanceUid ?? newUid();
  const seriesInstanceUid = newUid();
  await mkdir(opts.dir, { recursive: true });
  const instances: TestInstance[] = [];
  for (const source of opts.sources) {
    const sopInstanceUid = newUid();
    const path = join(opts.dir, `${sopInstanceUid}.dcm`);
    await copyFile(join(WG04_DIR, source), path);
    await chmod(path, 0o644);
    const edits = [
      "-m",
      `(0020,000D)=${studyInstanceUid}`,
      "-m",
      `(0020,000E)=${seriesInstanceUid}`,
      "-m",
      `(0008,0018)=${sopInstanceUid}`,
      "-i",
      `(0018,0015)=${opts.bodyPart ?? "KNEE"}`,
      ...(opts.seriesDescription ? ["-i", `(0008,103E)=${opts.seriesDescription}`] : []),
    ];
    const r = await tool("dcmodify", ["-nb", ...edits, path]);
    if (r.code !== 0) throw new Error(`dcmodify failed: ${r.stderr}`);
    if ((await dumpValue(path, "0008,0018")) !== sopInstanceUid)
      throw new Error("dcmodify did not apply");
    instances.push({ path, source, sopInstanceUid, storescuArgs: [...WG04_FILES[source]] });
  }
  return { studyInstanceUid, seriesInstanceUid, instances };
}

/** The data set of a Part 10 file: everything after the File Meta Information group. */
export function datasetBytes(file: Buffer): Buffer {
  const groupLength = file.readUInt32LE(132 + 8);
  return file.subarray(132 + 12 + groupLength);
}
