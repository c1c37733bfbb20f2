/**
 * The DICOM corpus kneegrade is held to (tests/integration/corpus.test.ts, docs/RELIABILITY.md
 * "Reading what the world sends"): pydicom's test files as Debian ships them, the NEMA WG04
 * radiographs from ../shared/data, and files with DCMTK/GDCM-style oddities made from pydicom's
 * MR_small at test time (tests/helpers/oddities.ts). For each file: what the worker's reader
 * (`readRadiographFile`, also `kneegrade grade`) says, what the listener's checks say of the data
 * set as the listener would spool it, and whether DCMTK's dcmdump reads the file.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  ACCEPTED_TRANSFER_SYNTAXES,
  DicomParseError,
  encodeFileMetaInformation,
  pixelDataProblem,
  pixelEncodingProblem,
  readRadiographHeader,
  structureProblem,
} from "@kneegrade/dicom";
import { PixelDataError, readRadiographFile } from "@kneegrade/pixels";
import { tool } from "./dcmtk.ts";
import { ODDITIES, splitPart10 } from "./oddities.ts";
import { WG04_DIR } from "./paths.ts";

/** Where Debian's python3-pydicom keeps its test files. */
export const PYDICOM_TEST_FILES = "/usr/lib/python3/dist-packages/pydicom/data/test_files/";

export interface CorpusFile {
  /** "pydicom/CT_small.dcm", "wg04/RG3_UNC.dcm", "oddity/meta-no-group-length.dcm". */
  name: string;
  path: string;
}

/**
 * The corpus present on this machine, the oddities written to `dir` first; `missing` names each
 * part that is absent (the test says so rather than pass in silence).
 */
export async function collectCorpus(
  dir: string,
): Promise<{ files: CorpusFile[]; missing: string[] }> {
  const files: CorpusFile[] = [];
  const missing: string[] = [];
  const add = async (prefix: string, from: string) => {
    for (const f of (await readdir(from)).filter((n) => n.endsWith(".dcm")).sort()) {
      files.push({ name: `${prefix}/${f}`, path: join(from, f) });
    }
  };
  if (existsSync(PYDICOM_TEST_FILES)) {
    await add("pydicom", PYDICOM_TEST_FILES);
    const base = {
      explicit: await readFile(join(PYDICOM_TEST_FILES, "MR_small.dcm")),
      implicit: await readFile(join(PYDICOM_TEST_FILES, "MR_small_implicit.dcm")),
    };
    const odd = join(dir, "oddity");
    await mkdir(odd, { recursive: true });
    for (const [name, make] of Object.entries(ODDITIES)) {
      await writeFile(join(odd, `${name}.dcm`), make(base));
    }
    await add("oddity", odd);
  } else {
    missing.push(
      `pydicom's test files (${PYDICOM_TEST_FILES}: Debian python3-pydicom) and the oddities made from them`,
    );
  }
  if (existsSync(WG04_DIR)) await add("wg04", WG04_DIR);
  else missing.push(`the WG04 radiographs (${WG04_DIR}: ../shared/data is absent)`);
  return { files, missing };
}

/** "accepted", or the refusal: a code and the reason as the product words it. */
export type Verdict = { accepted: true } | { accepted: false; code: string; reason: string };

const accepted: Verdict = { accepted: true };

/** What the worker (and `kneegrade grade`) make of the file. */
export async function readerVerdict(bytes: Uint8Array): Promise<Verdict> {
  try {
    await readRadiographFile(bytes);
    return accepted;
  } catch (error) {
    // Codes as the worker records them (packages/grading gradeDicom).
    if (error instanceof DicomParseError) {
      return { accepted: false, code: "UNREADABLE_DICOM", reason: error.message };
    }
    if (error instanceof PixelDataError) {
      return { accepted: false, code: error.code, reason: error.message };
    }
    throw error;
  }
}

/**
 * What the listener's object checks (services/listener scp.ts: header, whole-object structure,
 * pixel encoding, truncation) make of the file's data set as the listener spools it — behind
 * File Meta Information of its own, so the file's own meta never reaches them. Undefined when
 * the file has no File Meta to take the transfer syntax from (a sender would have to guess it)
 * or its transfer syntax is not one the listener accepts (Deflated, big endian).
 * Not applied: SOP class and transfer syntax negotiation, Rows/Columns limits, routing.
 */
export function listenerVerdict(bytes: Uint8Array): Verdict | undefined {
  const file = Buffer.from(bytes);
  if (file.length < 132 || file.toString("latin1", 128, 132) !== "DICM") return undefined;
  const parts = splitPart10(file);
  const metaValue = (tag: number) => {
    const m = parts.meta.find((e) => e.tag === tag)?.bytes;
    return m
      ?.subarray(8)
      .toString("latin1")
      .replace(/[\0 ]+$/, "");
  };
  const transferSyntaxUid = metaValue(0x00020010);
  // A syntax the listener does not accept never reaches it: the sender transcodes or gives up.
  if (!transferSyntaxUid || !ACCEPTED_TRANSFER_SYNTAXES.includes(transferSyntaxUid))
    return undefined;
  const spooled = new Uint8Array(
    Buffer.concat([
      encodeFileMetaInformation({
        mediaStorageSopClassUid: metaValue(0x00020002) || "1.2.3",
        mediaStorageSopInstanceUid: metaValue(0x00020003) || "1.2.3.4",
        transferSyntaxUid,
        sourceAeTitle: "MODALITY",
      }),
      parts.dataSet,
    ]),
  );
  const refused = (code: string, reason: string): Verdict => ({ accepted: false, code, reason });
  let header: ReturnType<typeof readRadiographHeader>;
  try {
    header = readRadiographHeader(spooled, true);
  } catch (error) {
    if (!(error instanceof DicomParseError)) throw error;
    // The DIMSE status the peer is answered with.
    return refused(error.kind === "unparseable" ? "C000" : "A900", error.message);
  }
  const problem =
    structureProblem(spooled) ??
    pixelEncodingProblem(header) ??
    pixelDataProblem(header, spooled.length, spooled.subarray(-1024));
  return problem ? refused("C000", problem) : accepted;
}

/** Whether DCMTK's dcmdump reads the whole file (exit status 0). */
export async function dcmdumpReads(path: string): Promise<boolean> {
  const r = await tool("dcmdump", ["-q", path]);
  if (r.code === -1 && !r.stdout && !r.stderr) throw new Error(`dcmdump did not run on ${path}`);
  return r.code === 0;
}

export interface CorpusRow {
  name: string;
  dcmdump: boolean;
  reader: Verdict;
  listener: Verdict | undefined;
  note?: string;
}

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

function verdictText(v: Verdict | undefined): string {
  if (!v) return "— (never reaches it: no File Meta, or a syntax it does not accept)";
  return v.accepted ? "accepted" : `refused ${v.code}: ${v.reason}`;
}

/** The Markdown table docs/RELIABILITY.md carries between its corpus markers. */
export function renderCorpusTable(rows: CorpusRow[]): string {
  const lines = [
    "| file | dcmdump | worker / `kneegrade grade` (`readRadiographFile`) | listener checks (data set as spooled) | note |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    lines.push(
      `| \`${r.name}\` | ${r.dcmdump ? "reads" : "**cannot read**"} | ${cell(verdictText(r.reader))} | ` +
        `${cell(verdictText(r.listener))} | ${cell(r.note ?? "")} |`,
    );
  }
  return `${lines.join("\n")}\n`;
}

export const CORPUS_BEGIN = "<!-- corpus table: generated by tests/integration/corpus.test.ts -->";
export const CORPUS_END = "<!-- end of corpus table -->";
