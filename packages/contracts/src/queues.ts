/**
 * The queues between the services and the jobs they carry. Data flows one way:
 * listener → `grade-study` → worker → `report-study` → reporter.
 * Producers validate with `parse` before `add`; consumers validate `job.data` before use.
 */
import { z } from "zod";

export const QUEUES = {
  gradeStudy: "grade-study",
  reportStudy: "report-study",
} as const;

export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

const uid = z
  .string()
  .min(1)
  .max(64)
  // PS3.5 9.1, as @kneegrade/dicom's isDicomUid: digits and single dots, no leading zeros.
  .regex(/^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/, "must be a DICOM UID");

/** A study revision is ready to grade: all its knee instances are in the spool and in PostgreSQL. */
export const GradeStudyJob = z.object({
  schemaVersion: z.literal(1),
  studyId: z.string().uuid(),
  studyInstanceUid: uid,
  revision: z.number().int().min(1),
});
export type GradeStudyJob = z.infer<typeof GradeStudyJob>;

/**
 * A study revision was graded: write its Structured Report and deliver it to the PACS. With
 * `reviewId` (from the review pages): also write that radiologist's signed SR revision and deliver
 * it the same way (an optional field added to schema version 1; older jobs lack it).
 */
export const ReportStudyJob = z.object({
  schemaVersion: z.literal(1),
  studyId: z.string().uuid(),
  studyInstanceUid: uid,
  revision: z.number().int().min(1),
  gradingJobId: z.string().uuid(),
  reviewId: z.string().uuid().optional(),
});
export type ReportStudyJob = z.infer<typeof ReportStudyJob>;

/**
 * Deterministic BullMQ job id of one study revision: adding the same revision twice is a no-op,
 * so a retry or a restart can never grade (or report) a revision twice.
 * BullMQ forbids `:` in custom ids, hence the `_` separators.
 */
export function studyRevisionJobId(queue: QueueName, studyInstanceUid: string, revision: number) {
  return `${queue}_${studyInstanceUid}_r${revision}`;
}

/** Job id of delivering one signature (review) of a study revision: one job per signature. */
export function signedReportJobId(studyInstanceUid: string, revision: number, reviewId: string) {
  return `${studyRevisionJobId(QUEUES.reportStudy, studyInstanceUid, revision)}_signed_${reviewId}`;
}
