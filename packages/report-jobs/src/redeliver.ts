import { existsSync } from "node:fs";
import type { Config } from "@kneegrade/config";
import { QUEUES, signedReportJobId, studyRevisionJobId } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { createQueue } from "@kneegrade/queue";

/**
 * `kneegrade redeliver <study>`: the study's latest report objects go back to PENDING and a new
 * `report-study` job sends them (the objects themselves are not rewritten: same UIDs, same bytes).
 * A radiologist's signature whose signed SR was never written (its job was lost) gets its job again.
 */
export async function redeliver(
  db: Db,
  config: Config,
  studyInstanceUid: string,
): Promise<{ revision: number; deliveries: number; jobId: string; signatures: number }> {
  const study = await db.study.findUnique({ where: { studyInstanceUid } });
  if (!study) throw new Error(`no study ${studyInstanceUid}`);
  const job = await db.gradingJob.findFirst({
    where: { studyId: study.id, status: "COMPLETED" },
    orderBy: { revision: "desc" },
  });
  if (!job) throw new Error(`study ${studyInstanceUid} has no graded revision to report`);
  const reports = await db.report.findMany({ where: { gradingJobId: job.id } });
  const gone = reports.filter((r) => !existsSync(r.path));
  if (gone.length > 0) {
    throw new Error(
      `${gone.length} report file(s) of study ${studyInstanceUid} are no longer in the spool ` +
        "(removed by SPOOL_RETENTION_DAYS?): nothing to send again",
    );
  }
  const reset = await db.delivery.updateMany({
    where: { report: { gradingJobId: job.id } },
    data: { status: "PENDING", lastError: null },
  });
  const written = new Set(reports.map((r) => r.sopInstanceUid));
  const unwritten = (
    await db.review.findMany({ where: { gradingJobId: job.id }, orderBy: { sequence: "asc" } })
  ).filter((r) => !written.has(r.sopInstanceUid));
  const queue = createQueue(QUEUES.reportStudy, config);
  const now = Date.now();
  const jobId = `${studyRevisionJobId(QUEUES.reportStudy, studyInstanceUid, job.revision)}_redeliver_${now}`;
  const payload = {
    schemaVersion: 1 as const,
    studyId: study.id,
    studyInstanceUid,
    revision: job.revision,
    gradingJobId: job.id,
  };
  try {
    await queue.add(QUEUES.reportStudy, payload, { jobId });
    for (const review of unwritten) {
      await queue.add(
        QUEUES.reportStudy,
        { ...payload, reviewId: review.id },
        {
          jobId: `${signedReportJobId(studyInstanceUid, job.revision, review.id)}_redeliver_${now}`,
        },
      );
    }
  } finally {
    await queue.close();
  }
  await db.auditEvent.create({
    data: {
      event: "report.redeliver",
      actor: "cli",
      studyInstanceUid,
      details: {
        revision: job.revision,
        deliveries: reset.count,
        jobId,
        signatures: unwritten.length,
      },
    },
  });
  return { revision: job.revision, deliveries: reset.count, jobId, signatures: unwritten.length };
}
