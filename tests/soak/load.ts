/**
 * What the soak's modalities send: knee studies composed from ../shared/data (bilateral and
 * single-knee radiographs from knee-kl crops, full size and small) and the real dev radiographs of
 * realdx-dev, each with UIDs of its own; non-knee objects; malformed objects the listener must
 * refuse with a reason; and the senders, DCMTK storescu and the product's own `kneegrade send`,
 * which retry a refused or cut-off send as a modality's queue does.
 */
import { execFile } from "node:child_process";
import { chmod, copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  type ComposedRadiograph,
  composeBilateral,
  composeRadiograph,
  radiographDicom,
} from "@kneegrade/sample-radiographs";
import { CLI } from "../helpers/cli.ts";
import { tool } from "../helpers/dcmtk.ts";
import { WG04_DIR } from "../helpers/paths.ts";
import { datasetOf, EXPLICIT_LE, rawStore } from "../helpers/raw-scu.ts";
import { REALDX_DIR } from "../helpers/realdx.ts";
import { SAMPLE_CROPS } from "../helpers/small-studies.ts";
import { newUid } from "../helpers/studies.ts";

const exec = promisify(execFile);

/** The real dev radiographs a grader must grade (AP views: one or both knees). */
export const REALDX_KNEES = [
  "arthritis_2.dcm",
  "arthritis_7.dcm",
  "fracture_2.dcm",
  "fracture_3.dcm",
  "stage_1_0.dcm",
  "stage_2_2.dcm",
  "stage_3_2.dcm",
  "stage_4_1.dcm",
];

export type KneeKind = "bilateral" | "bilateral-small" | "single-knee" | "realdx" | "two-part";
export type MalformedKind = "invalid-uid" | "bad-dimensions" | "encoding-mismatch";

export interface Modality {
  aet: string;
  sender: "storescu" | "kneegrade-send";
}

/** Three rooms: two send with DCMTK, one (a mobile unit's gateway) with kneegrade's own SCU. */
export const MODALITIES: Modality[] = [
  { aet: "DX_ROOM1", sender: "storescu" },
  { aet: "CR_ROOM2", sender: "storescu" },
  { aet: "MOBILE_DX", sender: "kneegrade-send" },
];

/** The composed radiographs, made once: each study re-encodes one with UIDs of its own. */
export interface Pictures {
  bilateral: ComposedRadiograph[];
  small: ComposedRadiograph[];
  single: ComposedRadiograph[];
  chest: ComposedRadiograph;
}

export async function composePictures(): Promise<Pictures> {
  const bilateral = [];
  for (let i = 0; i < 3; i++) {
    bilateral.push(await composeBilateral([SAMPLE_CROPS[i]!, SAMPLE_CROPS[(i + 2) % 5]!], i + 1));
  }
  const small = [];
  const single = [];
  for (let i = 0; i < 3; i++) {
    small.push(
      await composeRadiograph({
        widthMm: 360,
        heightMm: 300,
        spacingMm: 0.5,
        seed: i + 11,
        knees: [
          { png: SAMPLE_CROPS[(i + 1) % 5]!, xMm: 95, yMm: 150, sideMm: 90 },
          { png: SAMPLE_CROPS[(i + 3) % 5]!, xMm: 265, yMm: 150, sideMm: 90 },
        ],
      }),
    );
    single.push(
      await composeRadiograph({
        widthMm: 200,
        heightMm: 300,
        spacingMm: 0.2,
        seed: i + 21,
        knees: [{ png: SAMPLE_CROPS[(i + 4) % 5]!, xMm: 100, yMm: 150, sideMm: 90 }],
      }),
    );
  }
  // A radiograph that is not a knee by its header: routed away, never graded.
  const chest = await composeRadiograph({
    widthMm: 300,
    heightMm: 300,
    spacingMm: 0.5,
    seed: 31,
    knees: [],
  });
  return { bilateral, small, single, chest };
}

export interface Study {
  uid: string;
  kind: KneeKind | "non-knee";
  /** Files per association, in order; a later group is a late instance of the open study. */
  groups: string[][];
  /** storescu options that propose the files' transfer syntax. */
  storescuArgs: string[];
  dir: string;
}

let accession = 0;

async function writeComposed(
  dir: string,
  r: ComposedRadiograph,
  uid: string,
  o: { bodyPart?: string; studyDescription?: string; laterality?: "R" | "L" | "B" } = {},
) {
  const path = join(dir, `${newUid()}.dcm`);
  accession += 1;
  await writeFile(
    path,
    radiographDicom(r, {
      studyInstanceUid: uid,
      accessionNumber: `SOAK${String(accession).padStart(6, "0")}`,
      ...(o.bodyPart ? { bodyPart: o.bodyPart } : {}),
      ...(o.studyDescription
        ? { studyDescription: o.studyDescription, seriesDescription: o.studyDescription }
        : {}),
      ...(o.laterality ? { imageLaterality: o.laterality } : {}),
    }),
  );
  return path;
}

/** A copy of a real dev radiograph with new study, series and instance UIDs. */
async function writeRealdx(dir: string, file: string, uid: string) {
  const path = join(dir, `${newUid()}.dcm`);
  await copyFile(join(REALDX_DIR, file), path);
  await chmod(path, 0o644);
  const r = await tool("dcmodify", [
    "-nb",
    "-m",
    `(0020,000D)=${uid}`,
    "-m",
    `(0020,000E)=${newUid()}`,
    "-m",
    `(0008,0018)=${newUid()}`,
    path,
  ]);
  if (r.code !== 0) throw new Error(`dcmodify: ${r.stderr}`);
  return path;
}

export async function makeStudy(
  root: string,
  pictures: Pictures,
  kind: Study["kind"],
  n: number,
): Promise<Study> {
  const uid = newUid();
  const dir = join(root, uid);
  await mkdir(dir, { recursive: true });
  const pick = <T>(a: T[]) => a[n % a.length]!;
  let groups: string[][];
  switch (kind) {
    case "bilateral":
      groups = [[await writeComposed(dir, pick(pictures.bilateral), uid)]];
      break;
    case "bilateral-small":
      groups = [[await writeComposed(dir, pick(pictures.small), uid)]];
      break;
    case "single-knee":
      groups = [
        [
          await writeComposed(dir, pick(pictures.single), uid, {
            studyDescription: "XR KNEE RIGHT",
            laterality: "R",
          }),
        ],
      ];
      break;
    case "realdx":
      groups = [[await writeRealdx(dir, pick(REALDX_KNEES), uid)]];
      break;
    case "two-part":
      groups = [
        [await writeComposed(dir, pick(pictures.small), uid)],
        [
          await writeComposed(dir, pick(pictures.single), uid, {
            studyDescription: "XR KNEE RIGHT",
            laterality: "R",
          }),
        ],
      ];
      break;
    case "non-knee":
      groups = [
        [
          await writeComposed(dir, pictures.chest, uid, {
            bodyPart: "CHEST",
            studyDescription: "XR CHEST PA",
          }),
        ],
      ];
      break;
  }
  // The real radiographs are JPEG baseline, which storescu proposes only when told to.
  return { uid, kind, groups, dir, storescuArgs: kind === "realdx" ? ["-xy"] : [] };
}

export interface Malformed {
  kind: MalformedKind;
  sopInstanceUid: string;
  /** The refusal code the listener must record (AuditEvent instance.refused). */
  code: string;
  path: string;
}

/** A WG04 object (a real CR header) with new UIDs and the given edits. */
async function wg04Variant(dir: string, source: string, edits: string[]) {
  await mkdir(dir, { recursive: true });
  const sop = newUid();
  const path = join(dir, `${sop}.dcm`);
  await copyFile(join(WG04_DIR, source), path);
  await chmod(path, 0o644);
  const r = await tool("dcmodify", [
    "-nb",
    "-m",
    `(0020,000E)=${newUid()}`,
    "-m",
    `(0008,0018)=${sop}`,
    "-i",
    "(0018,0015)=KNEE",
    ...edits,
    path,
  ]);
  if (r.code !== 0) throw new Error(`dcmodify: ${r.stderr}`);
  return { sop, path };
}

export async function makeMalformed(root: string, kind: MalformedKind): Promise<Malformed> {
  const dir = join(root, `malformed-${newUid()}`);
  switch (kind) {
    case "invalid-uid": {
      const v = await wg04Variant(dir, "RG3_UNC.dcm", ["-m", "(0020,000D)=1.2.3.x"]);
      return { kind, sopInstanceUid: v.sop, code: "INVALID_OBJECT", path: v.path };
    }
    case "bad-dimensions": {
      const v = await wg04Variant(dir, "RG3_UNC.dcm", [
        "-m",
        `(0020,000D)=${newUid()}`,
        "-m",
        "(0028,0010)=65535",
        "-m",
        "(0028,0011)=65535",
      ]);
      return { kind, sopInstanceUid: v.sop, code: "BAD_DIMENSIONS", path: v.path };
    }
    case "encoding-mismatch": {
      // JPEG lossless pixel data announced as explicit VR little endian.
      const v = await wg04Variant(dir, "RG3_JPLL.dcm", ["-m", `(0020,000D)=${newUid()}`]);
      return { kind, sopInstanceUid: v.sop, code: "ENCODING_MISMATCH", path: v.path };
    }
  }
}

export interface SendResult {
  ok: boolean;
  /** What went wrong, for the log of retries. */
  detail: string;
}

/** One association: the files, with the modality's sender. ok only when every object was stored. */
export async function sendFiles(
  port: number,
  modality: Modality,
  files: string[],
  /** storescu options that propose the files' transfer syntax (the real radiographs are JPEG). */
  storescuArgs: string[] = [],
): Promise<SendResult> {
  if (modality.sender === "storescu") {
    const r = await tool(
      "storescu",
      [
        "-v",
        ...storescuArgs,
        "-aec",
        "KNEEGRADE",
        "-aet",
        modality.aet,
        "127.0.0.1",
        String(port),
        ...files,
      ],
      120_000,
    );
    const stored = (r.stdout + r.stderr).match(/Received Store Response \(Success\)/g)?.length ?? 0;
    return {
      ok: r.code === 0 && stored === files.length,
      detail: `storescu exit ${r.code}, ${stored}/${files.length} stored: ${lastLine(r.stderr || r.stdout)}`,
    };
  }
  try {
    await exec(
      process.execPath,
      [
        CLI,
        "send",
        "--port",
        String(port),
        "--aet",
        "KNEEGRADE",
        "--calling-aet",
        modality.aet,
        ...files,
      ],
      { timeout: 120_000 },
    );
    return { ok: true, detail: "" };
  } catch (error) {
    const e = error as { stdout?: string; message: string };
    return { ok: false, detail: `kneegrade send: ${lastLine(e.stdout ?? e.message)}` };
  }
}

function lastLine(s: string) {
  return s.trim().split("\n").pop()?.slice(0, 200) ?? "";
}

/** Sends a malformed object once; returns the DIMSE status (null: none came back). */
export async function sendMalformed(port: number, m: Malformed): Promise<number | null> {
  if (m.kind === "encoding-mismatch") {
    const r = await rawStore({
      port,
      calledAet: "KNEEGRADE",
      callingAet: "CR_ROOM2",
      sopClassUid: "1.2.840.10008.5.1.4.1.1.1",
      transferSyntax: EXPLICIT_LE,
      objects: [{ sopInstanceUid: m.sopInstanceUid, dataset: datasetOf(await readFile(m.path)) }],
    });
    return r.statuses[0] ?? null;
  }
  const r = await tool("storescu", [
    "-v",
    "-aec",
    "KNEEGRADE",
    "-aet",
    "DX_ROOM1",
    "127.0.0.1",
    String(port),
    m.path,
  ]);
  const status = /Received Store Response \(([^)]*)\)/.exec(r.stdout + r.stderr)?.[1];
  const code = /0x([0-9a-f]{4})/i.exec(r.stdout + r.stderr)?.[1];
  if (status === "Success") return 0;
  return code ? Number.parseInt(code, 16) : status ? -1 : null;
}
