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
import type { Logger } from "@kneegrade/log";
import {
  type KneeDecision,
  type ReportInput,
  reportUids,
  SR_SOP_CLASSES,
  writeComprehensiveSr,
} from "@kneegrade/reports";
import { UnrecoverableError } from "bullmq";
import { buildReportInputWithIds, encodeReportObject, writeDurably } from "./report.ts";

export async function writeSignedReport(
  db: Db,
  reviewId: string,
  config: Pick<
    Config,
    "SPOOL_DIR" | "DEVICE_OBSERVER_UID" | "LISTENER_AET" | "INSTITUTION_NAME"
  > & { pacs: { calledAet: string; host: string; port: number } },
  log: Logger,
): Promise<void> {
  const review = await db.review.findUnique({
    where: { id: reviewId },
    include: { knees: true, user: true, study: true, gradingJob: true },
  });
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
  const decisions: KneeDecision[] = kneeResultIds.map((id) => {
    const k = review.knees.find((r) => r.kneeResultId === id);
    if (!k) throw new UnrecoverableError(`review ${reviewId} has no decision for knee ${id}`);
    return k.radiologistGrade === null
      ? { grade: null, notGradableReason: k.notGradableReason ?? "" }
      : { grade: k.radiologistGrade };
  });
  const signed: ReportInput = {
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
  const path = join(
    config.SPOOL_DIR,
    "reports",
    review.study.studyInstanceUid,
    `${review.sopInstanceUid}.dcm`,
  );
  const bytes = await encodeReportObject("signed-sr", review.study.studyInstanceUid, () =>
    writeComprehensiveSr(signed),
  );
  const sha256 = await writeDurably(path, bytes);
  await db.$transaction(async (tx) => {
    if (await tx.report.findUnique({ where: { sopInstanceUid: review.sopInstanceUid } })) return;
    await tx.report.create({
      data: {
        studyId: review.studyId,
        gradingJobId: review.gradingJobId,
        sopInstanceUid: review.sopInstanceUid,
        seriesInstanceUid: signed.seriesInstanceUid,
        sopClassUid: SR_SOP_CLASSES.comprehensive,
        path,
        sha256,
        verified: true,
        deliveries: {
          create: {
            destinationAet: config.pacs.calledAet,
            host: config.pacs.host,
            port: config.pacs.port,
          },
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
          reviewId,
          sequence: review.sequence,
          predecessor: review.predecessorSopInstanceUid,
        },
      },
    });
  });
  log.info(
    {
      event: "report.signed-written",
      studyInstanceUid: review.study.studyInstanceUid,
      sopInstanceUid: review.sopInstanceUid,
    },
    "signed report written",
  );
}
