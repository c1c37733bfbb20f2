/**
 * A radiologist's signature (a `Review` row the review pages recorded) becomes a signed SR
 * revision: the same Comprehensive SR, VERIFIED, with the Verifying Observer, the Predecessor
 * Documents Sequence pointing at the SR it supersedes, the radiologist's grades as the findings and
 * the AI's grades kept as the AI's. Written once (UIDs from the review), then delivered by the
 * report job like every other report object.
 */
import { join } from "node:path";
import type { Config } from "@kneegrade/config";
import type { Db } from "@kneegrade/db";
import {
  type KneeDecision,
  type ReportInput,
  reportUids,
  SR_SOP_CLASSES,
  writeComprehensiveSr,
} from "@kneegrade/dicom-writers";
import type { Logger } from "@kneegrade/log";
import { UnrecoverableError } from "bullmq";
import { buildReportInputWithIds, encodeReportObject, writeDurably } from "./report.ts";

type SignedReportConfig = Pick<
  Config,
  "SPOOL_DIR" | "DEVICE_OBSERVER_UID" | "LISTENER_AET" | "INSTITUTION_NAME"
> & { pacs: { calledAet: string; host: string; port: number } };

const loadReview = (db: Db, reviewId: string) =>
  db.review.findUnique({
    where: { id: reviewId },
    include: { knees: true, user: true, study: true, gradingJob: true },
  });
type LoadedReview = NonNullable<Awaited<ReturnType<typeof loadReview>>>;
type Predecessor = { sopClassUid: string; sopInstanceUid: string; seriesInstanceUid: string };

/** The radiologist's decision on each graded knee, in the report input's order. */
function decisionsOf(review: LoadedReview, kneeResultIds: string[]): KneeDecision[] {
  return kneeResultIds.map((id) => {
    const k = review.knees.find((r) => r.kneeResultId === id);
    if (!k) throw new UnrecoverableError(`review ${review.id} has no decision for knee ${id}`);
    return k.radiologistGrade === null
      ? { grade: null, notGradableReason: k.notGradableReason ?? "" }
      : { grade: k.radiologistGrade };
  });
}

/** The AI's report input as the signed revision: its own series and UID, and the signature. */
function signedInput(
  input: ReportInput,
  review: LoadedReview,
  predecessor: Predecessor,
  decisions: KneeDecision[],
): ReportInput {
  return {
    ...input,
    seriesInstanceUid: reportUids(review.gradingJobId).signedSrSeries,
    sopInstanceUid: review.sopInstanceUid,
    seriesNumber: 980 + Math.min(review.gradingJob.revision, 9),
    instanceNumber: review.sequence,
    contentDateTime: review.signedAt,
    signature: {
      observerName: review.user.displayName,
      organisation: review.user.organisation,
      dateTime: review.signedAt,
      predecessor: {
        sopClassUid: predecessor.sopClassUid,
        sopInstanceUid: predecessor.sopInstanceUid,
        seriesInstanceUid: predecessor.seriesInstanceUid,
      },
      knees: decisions,
      findings: review.findings.split("\n"),
      impression: review.impression.split("\n"),
    },
  };
}

/** The written file as a verified report awaiting delivery to the PACS, and its audit event. */
async function recordSignedReport(
  db: Db,
  review: LoadedReview,
  file: { path: string; sha256: string; seriesInstanceUid: string },
  pacs: SignedReportConfig["pacs"],
): Promise<void> {
  await db.$transaction(async (tx) => {
    if (await tx.report.findUnique({ where: { sopInstanceUid: review.sopInstanceUid } })) return;
    await tx.report.create({
      data: {
        studyId: review.studyId,
        gradingJobId: review.gradingJobId,
        sopInstanceUid: review.sopInstanceUid,
        seriesInstanceUid: file.seriesInstanceUid,
        sopClassUid: SR_SOP_CLASSES.comprehensive,
        path: file.path,
        sha256: file.sha256,
        verified: true,
        deliveries: {
          create: { destinationAet: pacs.calledAet, host: pacs.host, port: pacs.port },
        },
      },
    });
    await tx.auditEvent.create({
      data: {
        event: "report.signed-written",
        actor: "reporter",
        studyInstanceUid: review.study.studyInstanceUid,
        sopInstanceUid: review.sopInstanceUid,
        details: {
          reviewId: review.id,
          sequence: review.sequence,
          predecessor: review.predecessorSopInstanceUid,
        },
      },
    });
  });
}

export async function writeSignedReport(
  db: Db,
  reviewId: string,
  config: SignedReportConfig,
  log: Logger,
): Promise<void> {
  const review = await loadReview(db, reviewId);
  if (!review) throw new UnrecoverableError(`no review ${reviewId}`);
  if (await db.report.findUnique({ where: { sopInstanceUid: review.sopInstanceUid } })) return;
  const { input, kneeResultIds } = await buildReportInputWithIds(db, review.gradingJobId, config);
  const predecessor = await db.report.findUnique({
    where: { sopInstanceUid: review.predecessorSopInstanceUid },
  });
  if (!predecessor) {
    // The AI SR is written by this job's first step; a signed predecessor before its amendment.
    throw new Error(`predecessor ${review.predecessorSopInstanceUid} not written yet`);
  }
  const signed = signedInput(input, review, predecessor, decisionsOf(review, kneeResultIds));
  const studyInstanceUid = review.study.studyInstanceUid;
  const path = join(config.SPOOL_DIR, "reports", studyInstanceUid, `${review.sopInstanceUid}.dcm`);
  const bytes = await encodeReportObject("signed-sr", studyInstanceUid, () =>
    writeComprehensiveSr(signed),
  );
  const sha256 = await writeDurably(path, bytes);
  await recordSignedReport(
    db,
    review,
    { path, sha256, seriesInstanceUid: signed.seriesInstanceUid },
    config.pacs,
  );
  log.info(
    {
      event: "report.signed-written",
      studyInstanceUid,
      sopInstanceUid: review.sopInstanceUid,
    },
    "signed report written",
  );
}
