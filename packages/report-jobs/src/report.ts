/**
 * Writing a study revision's report objects: the Comprehensive SR (always), the Secondary Capture
 * and the Basic Text SR (when configured), from the grading results in PostgreSQL and the header
 * of a graded image in the spool. UIDs derive from the grading job, so writing again (a retry, a
 * restart) reproduces the same objects: one SR per study revision, never two.
 */
import { createHash } from "node:crypto";
import { mkdir, open, readFile, rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Config } from "@kneegrade/config";
import type { Db } from "@kneegrade/db";
import { readRadiographHeader, uidFromName } from "@kneegrade/dicom";
import {
  algorithmOf,
  byReadingOrder,
  clampStudyContext,
  derivedUids,
  type KneeFinding,
  kneeFinding,
  type NotGradedKnee,
  type ReportInput,
  readStudyContext,
  reportUids,
  SECONDARY_CAPTURE_SOP_CLASS,
  SIDE_CODE,
  type SourceImage,
  SR_SOP_CLASSES,
  writeBasicTextSr,
  writeComprehensiveSr,
  writeSecondaryCapture,
} from "@kneegrade/dicom-writers";
import { UnrecoverableError } from "bullmq";

/** One entry of InstanceGrading.notGraded, as the worker writes it (services/worker/src/job.ts). */
interface StoredNotGradedKnee {
  laterality: keyof typeof SIDE_CODE;
  lateralitySource?: string;
  code: string;
  reason: string;
  region?: KneeFinding["region"];
  localisationScore?: number;
}

export const REPORT_KINDS = ["sr", "sc", "text-sr"] as const;
export type ReportKind = (typeof REPORT_KINDS)[number];

export interface WrittenObject {
  kind: ReportKind;
  sopInstanceUid: string;
  seriesInstanceUid: string;
  sopClassUid: string;
  path: string;
  sha256: string;
}

/** The installation's Device Observer UID: configured, or stable per listener AE title. */
export function deviceObserverUid(config: Pick<Config, "DEVICE_OBSERVER_UID" | "LISTENER_AET">) {
  return config.DEVICE_OBSERVER_UID ?? uidFromName(`kneegrade-device:${config.LISTENER_AET}`);
}

type InputConfig = Pick<Config, "DEVICE_OBSERVER_UID" | "LISTENER_AET" | "INSTITUTION_NAME">;

/** Everything the writers need, from the database and one spooled header. */
export async function buildReportInput(
  db: Db,
  gradingJobId: string,
  config: InputConfig,
): Promise<ReportInput> {
  return (await buildReportInputWithIds(db, gradingJobId, config)).input;
}

/** `buildReportInput`, with the `KneeResult` id of each of `input.knees` (same order). */
export async function buildReportInputWithIds(
  db: Db,
  gradingJobId: string,
  config: InputConfig,
): Promise<{ input: ReportInput; kneeResultIds: string[] }> {
  const job = await db.gradingJob.findUniqueOrThrow({
    where: { id: gradingJobId },
    include: {
      study: true,
      instances: { include: { instance: true }, orderBy: { createdAt: "asc" } },
      results: { include: { instance: true }, orderBy: [{ createdAt: "asc" }] },
    },
  });
  const images = job.instances.map((g) => g.instance);
  // The patient and study attributes come from a graded image's own header.
  let context: ReportInput["context"] | undefined;
  const sources = new Map<string, SourceImage>();
  for (const instance of images) {
    if (!instance.spoolPath) continue;
    try {
      const read = readStudyContext(await readHeaderBytes(instance.spoolPath));
      context ??= read.context;
      sources.set(instance.id, read.image);
    } catch {
      // unreadable or missing: referenced from the database alone below
    }
  }
  const sourceOf = (instance: (typeof images)[number]): SourceImage =>
    sources.get(instance.id) ?? {
      sopClassUid: instance.sopClassUid,
      sopInstanceUid: instance.sopInstanceUid,
      seriesInstanceUid: "",
    };
  if (!context)
    throw new Error(`no readable image of study ${job.study.studyInstanceUid} in the spool`);
  // The header may break its VR limits (the listener stored it clamped the same way): the report
  // carries the values the writer can encode, and says which ones it shortened or left out.
  const limited = clampStudyContext(context);
  context = limited.context;
  const results = byReadingOrder(job.results);
  const knees = results.map((r) => kneeFinding(r, sourceOf(r.instance)));
  const warnings = [
    ...job.instances.flatMap((g) => (g.warnings as string[]) ?? []),
    ...limited.notes.map(
      (n) =>
        `${n.keyword} ${n.tag} in the images is beyond the DICOM limits of its VR (${n.rule}): ${n.action === "dropped" ? "left out of" : "truncated in"} this report`,
    ),
  ];
  const notGraded: NotGradedKnee[] = job.instances.flatMap((g) =>
    ((g.notGraded as StoredNotGradedKnee[] | null) ?? []).map((k) => ({
      laterality: SIDE_CODE[k.laterality],
      lateralitySource: k.lateralitySource ?? "",
      code: k.code,
      reason: k.reason,
      localisationScore: k.localisationScore ?? 0,
      source: sourceOf(g.instance),
      region: k.region ?? null,
    })),
  );
  const input: ReportInput = {
    context,
    knees,
    ...(notGraded.length > 0 ? { notGraded } : {}),
    ungraded: job.instances
      .filter((g) => g.outcome !== "GRADED")
      .map((g) => ({
        source: sourceOf(g.instance),
        code: g.code ?? g.outcome,
        reason: g.reason ?? "",
      })),
    warnings,
    algorithm: algorithmOf(job),
    seriesInstanceUid: reportUids(job.id).aiSrSeries,
    sopInstanceUid: reportUids(job.id).aiSr,
    seriesNumber: 990 + Math.min(job.revision, 9),
    instanceNumber: 1,
    contentDateTime: job.finishedAt ?? new Date(),
    deviceObserverUid: deviceObserverUid(config),
    ...(config.INSTITUTION_NAME ? { institutionName: config.INSTITUTION_NAME } : {}),
  };
  return { input, kneeResultIds: results.map((r) => r.id) };
}

/** How much of a spooled image is read for its header first (the listener keeps as much). */
const HEADER_PREFIX = 256 * 1024;

/**
 * The bytes of a spooled image up to its pixel data: its first bytes when they hold the whole
 * header (the radiograph's megabytes of pixels are never read), else the whole file.
 */
export async function readHeaderBytes(path: string): Promise<Uint8Array> {
  const file = await open(path, "r");
  try {
    const head = new Uint8Array(HEADER_PREFIX);
    const { bytesRead } = await file.read(head, 0, HEADER_PREFIX, 0);
    const prefix = head.subarray(0, bytesRead);
    if (bytesRead < HEADER_PREFIX) return prefix;
    try {
      // Parses up to the Pixel Data element, and throws when the prefix ends before it.
      readRadiographHeader(prefix, false);
      return prefix;
    } catch {
      // The header goes on past the prefix (or is not a radiograph's): the whole file decides.
    }
  } finally {
    await file.close();
  }
  return new Uint8Array(await readFile(path));
}

/** Writes a file atomically (temp file, fsync, rename, fsync of the directory) and returns its sha256. */
export async function writeDurably(path: string, bytes: Uint8Array): Promise<string> {
  const [sha256] = await writeAllDurably([{ path, bytes }]);
  return sha256!;
}

/**
 * Writes files atomically, side by side: each to a temp file that is fsynced, then renamed, then
 * each directory fsynced once (a rename is durable only once its directory is on disk). When it
 * resolves every file is on disk under its name. Returns the sha256 of each, in order.
 */
export async function writeAllDurably(
  files: { path: string; bytes: Uint8Array }[],
): Promise<string[]> {
  const dirs = [...new Set(files.map((f) => dirname(f.path)))];
  await Promise.all(dirs.map((d) => mkdir(d, { recursive: true })));
  const tmp = (path: string) => `${path}.tmp-${process.pid}`;
  await Promise.all(
    files.map(async ({ path, bytes }) => {
      const handle = await open(tmp(path), "w");
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }),
  );
  await Promise.all(files.map(({ path }) => rename(tmp(path), path)));
  await Promise.all(
    dirs.map(async (d) => {
      const dir = await open(d, "r");
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    }),
  );
  return files.map(({ bytes }) => createHash("sha256").update(bytes).digest("hex"));
}

/**
 * A report object that cannot be encoded: the same input fails the same way on every retry, so the
 * job fails at once (BullMQ `UnrecoverableError`) instead of retrying for hours. The message is
 * fixed — code, object and study UID — because the encoder's own may quote a header value (dcmjs:
 * "Value exceeds max length, vr: PN, value: <the patient's name>"); only the VR is kept of it.
 */
export class ReportObjectError extends UnrecoverableError {
  readonly code = "REPORT_OBJECT_INVALID";
  constructor(kind: ReportKind | "signed-sr", studyInstanceUid: string, cause: unknown) {
    const vr = /\bvr:? ([A-Z]{2})\b/.exec(cause instanceof Error ? cause.message : "")?.[1];
    super(
      `REPORT_OBJECT_INVALID: the ${kind} of study ${studyInstanceUid} could not be encoded${vr ? ` (a ${vr} value the DICOM writer refuses)` : ""}`,
    );
    // BullMQ and isFinalFailure recognise an unrecoverable error by this name.
    this.name = "UnrecoverableError";
  }
}

/** Runs an encoder; any error it throws becomes a {@link ReportObjectError}. */
export async function encodeReportObject(
  kind: ReportKind | "signed-sr",
  studyInstanceUid: string,
  encode: () => Uint8Array | Promise<Uint8Array>,
): Promise<Uint8Array> {
  try {
    return await encode();
  } catch (error) {
    throw new ReportObjectError(kind, studyInstanceUid, error);
  }
}

export async function writeReportObjects(
  input: ReportInput,
  dir: string,
  options: { secondaryCapture: boolean; basicTextSr: boolean },
): Promise<WrittenObject[]> {
  // The writers take these UIDs from `input` and `derivedUids(input)`: the rows can use them too.
  const derived = derivedUids(input);
  const study = input.context.studyInstanceUid;
  // Started first: the capture's image work runs in sharp's threads while the SRs are encoded.
  const sc = options.secondaryCapture
    ? encodeReportObject("sc", study, () => writeSecondaryCapture(input))
    : undefined;
  const [srBytes, scBytes, textBytes] = await Promise.all([
    encodeReportObject("sr", study, () => writeComprehensiveSr(input)),
    sc,
    options.basicTextSr
      ? encodeReportObject("text-sr", study, () => writeBasicTextSr(input))
      : undefined,
  ]);
  const objects: (Omit<WrittenObject, "path" | "sha256"> & { bytes: Uint8Array })[] = [
    {
      kind: "sr",
      sopClassUid: SR_SOP_CLASSES.comprehensive,
      sopInstanceUid: input.sopInstanceUid,
      seriesInstanceUid: input.seriesInstanceUid,
      bytes: srBytes,
    },
  ];
  if (scBytes) {
    objects.push({
      kind: "sc",
      sopClassUid: SECONDARY_CAPTURE_SOP_CLASS,
      ...derived.secondaryCapture,
      bytes: scBytes,
    });
  }
  if (textBytes) {
    objects.push({
      kind: "text-sr",
      sopClassUid: SR_SOP_CLASSES.basicText,
      ...derived.basicTextSr,
      bytes: textBytes,
    });
  }
  const files = objects.map(({ bytes, sopInstanceUid }) => ({
    path: join(dir, `${sopInstanceUid}.dcm`),
    bytes,
  }));
  const sha256 = await writeAllDurably(files);
  return objects.map(({ bytes: _bytes, ...object }, i) => ({
    ...object,
    path: files[i]!.path,
    sha256: sha256[i]!,
  }));
}
