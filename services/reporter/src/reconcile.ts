/**
 * The database is the truth for reports too. A study revision that PostgreSQL says is graded
 * (grading job COMPLETED, study GRADED at that revision) has a `report-study` job in Redis until
 * it is reported; one that Redis lost (restarted without persistence, failed over, flushed) after
 * the worker added it is added again under its deterministic id, so it is reported once. A
 * revision whose delivery was dead-lettered is left to `kneegrade redeliver`.
 */
import { QUEUES, ReportStudyJob, studyRevisionJobId } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { errorFields, type Logger } from "@kneegrade/log";
import type { Queue } from "bullmq";

export async function reconcileReportJobs(
  db: Db,
  queue: Queue,
  log?: Logger,
  opts: { now?: Date; graceMs?: number; limit?: number } = {},
): Promise<string[]> {
  const now = opts.now ?? new Date();
  const rows = await db.gradingJob.findMany({
    where: {
      queue: QUEUES.gradeStudy,
      status: "COMPLETED",
      finishedAt: { lt: new Date(now.getTime() - (opts.graceMs ?? 30_000)) },
      study: { status: "GRADED" },
    },
    include: {
      study: { select: { studyInstanceUid: true, revision: true } },
      reports: { select: { deliveries: { select: { status: true } } } },
    },
    orderBy: { createdAt: "asc" },
    take: opts.limit ?? 500,
  });
  const requeued: string[] = [];
  for (const row of rows) {
    // A newer revision is on its way through grading; this one's report is moot.
    if (row.revision !== row.study.revision) continue;
    if (row.reports.some((r) => r.deliveries.some((d) => d.status === "FAILED"))) continue;
    const jobId = studyRevisionJobId(QUEUES.reportStudy, row.study.studyInstanceUid, row.revision);
    if (await queue.getJob(jobId)) continue;
    const payload = ReportStudyJob.parse({
      schemaVersion: 1,
      studyId: row.studyId,
      studyInstanceUid: row.study.studyInstanceUid,
      revision: row.revision,
      gradingJobId: row.id,
    });
    await queue.add(QUEUES.reportStudy, payload, { jobId });
    await db.auditEvent.create({
      data: {
        event: "report.requeued",
        actor: "reporter",
        studyInstanceUid: row.study.studyInstanceUid,
        details: { jobId, revision: row.revision },
      },
    });
    requeued.push(jobId);
    log?.warn(
      { event: "report.requeued", jobId, studyInstanceUid: row.study.studyInstanceUid },
      "report job missing from Redis: added again",
    );
  }
  return requeued;
}

/** Runs the reconciler at start-up and every `intervalMs` until stopped. */
export function startReportReconciler(opts: {
  db: Db;
  /** The `report-study` queue (the reporter's; closed by its owner). */
  queue: Queue;
  log: Logger;
  intervalMs?: number;
}): { stop(): Promise<void> } {
  const { queue } = opts;
  const intervalMs = opts.intervalMs ?? 60_000;
  let running: Promise<void> | undefined;
  const run = () => {
    if (running) return;
    running = reconcileReportJobs(opts.db, queue, opts.log, {
      graceMs: Math.min(30_000, intervalMs),
    })
      .then(() => {})
      .catch((error) =>
        opts.log.warn(
          { event: "report.reconcile-error", err: errorFields(error) },
          "report reconciler failed; retrying on its next round",
        ),
      )
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(run, intervalMs);
  run();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
