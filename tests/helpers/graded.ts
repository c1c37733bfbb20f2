/**
 * Rows of a graded study written straight into PostgreSQL, as the listener and the worker record
 * them, for tests of what reads them (the review pages, the reporter).
 */
import { randomUUID } from "node:crypto";
import type { Db } from "@kneegrade/db";
import { newUid } from "./studies.ts";

const DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1";
const EXPLICIT_LE = "1.2.840.10008.1.2.1";

/**
 * A series of `studyId` with one knee radiograph, received from a modality and routed as a knee;
 * `spoolPath` and `imageLaterality` when the test reads the image.
 */
export async function recordedInstance(
  db: Db,
  studyId: string,
  image: { spoolPath?: string; imageLaterality?: string } = {},
) {
  const series = await db.series.create({ data: { seriesInstanceUid: newUid(), studyId } });
  return db.instance.create({
    data: {
      sopInstanceUid: newUid(),
      sopClassUid: DX_FOR_PRESENTATION,
      studyId,
      seriesId: series.id,
      transferSyntaxUid: EXPLICIT_LE,
      digest: `blake3:${"0".repeat(64)}`,
      sizeBytes: 1n,
      callingAet: "MODALITY",
      revision: 1,
      routing: "KNEE",
      routingReason: "test",
      ...image,
    },
  });
}

/** The completed grading job of `studyId`'s first revision, by a test model. */
export function completedGradingJob(db: Db, studyId: string, jobIdPrefix: string) {
  return db.gradingJob.create({
    data: {
      jobId: `${jobIdPrefix}_${randomUUID()}`,
      queue: "grade-study",
      studyId,
      revision: 1,
      status: "COMPLETED",
      finishedAt: new Date(),
      modelVersion: "test",
      modelStatus: "candidate",
    },
  });
}

/** The AI's grade of one knee of `instanceId`; its probabilities peak at `klGrade` unless given. */
export function gradedKnee(
  db: Db,
  at: { gradingJobId: string; instanceId: string },
  laterality: "RIGHT" | "LEFT",
  klGrade: number,
  extra: {
    probabilities?: number[];
    lateralitySource?: string;
    region?: { x: number; y: number; width: number; height: number };
    cropPng?: Uint8Array<ArrayBuffer>;
  } = {},
) {
  return db.kneeResult.create({
    data: {
      ...at,
      laterality,
      klGrade,
      probabilities: [0, 1, 2, 3, 4].map((g) => (g === klGrade ? 0.6 : 0.1)),
      lowConfidence: false,
      modelVersion: "test",
      timingsMs: {},
      ...extra,
    },
  });
}
