/**
 * Study assembly, like Orthanc's "stable study": a study is ready when no instance has arrived
 * for STUDY_STABLE_SECONDS. Then exactly one grading job is recorded for its current revision
 * (PostgreSQL) and put on the `grade-study` queue (Redis) through a transactional outbox, so a
 * crash between the two never loses or doubles a job. All state is in PostgreSQL: a restarted
 * listener carries on where the last one stopped.
 */
import { GradeStudyJob, QUEUES, studyRevisionJobId } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { errorFields, type Logger } from "@kneegrade/log";
import type { Queue } from "bullmq";

export interface AssemblyResult {
  queued: { studyInstanceUid: string; revision: number }[];
  refused: { studyInstanceUid: string; reason: string }[];
}

/** Moves every stable RECEIVING study to QUEUED (with a job row) or REFUSED (no knee in it). */
export async function assembleStableStudies(
  db: Db,
  stableSeconds: number,
  now = new Date(),
): Promise<AssemblyResult> {
  const cutoff = new Date(now.getTime() - stableSeconds * 1000);
  const candidates = await db.study.findMany({
    where: { status: "RECEIVING", lastReceivedAt: { lte: cutoff } },
    select: { id: true },
    orderBy: { lastReceivedAt: "asc" },
    take: 100,
  });
  const result: AssemblyResult = { queued: [], refused: [] };
  for (const { id } of candidates) {
    await db.$transaction(async (tx) => {
      await tx.$executeRaw`SELECT 1 FROM "Study" WHERE id = ${id}::uuid FOR UPDATE`;
      const study = await tx.study.findUniqueOrThrow({ where: { id } });
      // Re-checked under the lock: an instance may have arrived since the scan.
      if (study.status !== "RECEIVING" || study.lastReceivedAt > cutoff) return;
      const knees = await tx.instance.count({ where: { studyId: id, routing: "KNEE" } });
      if (knees === 0) {
        const reasons = await tx.instance.findMany({
          where: { studyId: id },
          distinct: ["routingReason"],
          select: { routingReason: true },
        });
        const reason = `NOT_KNEE: ${reasons.map((r) => r.routingReason).join("; ")}`;
        await tx.study.update({ where: { id }, data: { status: "REFUSED", statusReason: reason } });
        await tx.auditEvent.create({
          data: {
            event: "study.refused",
            actor: "listener",
            studyInstanceUid: study.studyInstanceUid,
            details: { reason },
          },
        });
        result.refused.push({ studyInstanceUid: study.studyInstanceUid, reason });
        return;
      }
      const jobId = studyRevisionJobId(QUEUES.gradeStudy, study.studyInstanceUid, study.revision);
      await tx.gradingJob.upsert({
        where: { studyId_revision: { studyId: id, revision: study.revision } },
        create: {
          jobId,
          queue: QUEUES.gradeStudy,
          studyId: id,
          revision: study.revision,
          status: "QUEUED",
        },
        update: {},
      });
      await tx.study.update({ where: { id }, data: { status: "QUEUED" } });
      await tx.auditEvent.create({
        data: {
          event: "study.stable",
          actor: "listener",
          studyInstanceUid: study.studyInstanceUid,
          details: { revision: study.revision, kneeInstances: knees, jobId },
        },
      });
      result.queued.push({ studyInstanceUid: study.studyInstanceUid, revision: study.revision });
    });
  }
  return result;
}

/**
 * The outbox: puts every recorded but not yet enqueued grading job on its queue. One row that
 * cannot become a job (its payload fails the contract) is marked FAILED with the reason, and its
 * study too; it never blocks the rows after it. A Redis error stops this pass (it would fail for
 * every row alike); the next tick tries again.
 */
export async function enqueuePendingJobs(db: Db, queue: Queue, log?: Logger): Promise<number> {
  const pending = await db.gradingJob.findMany({
    where: { enqueuedAt: null, queue: QUEUES.gradeStudy, status: { not: "FAILED" } },
    include: { study: { select: { studyInstanceUid: true } } },
    orderBy: { createdAt: "asc" },
    take: 100,
  });
  let enqueued = 0;
  for (const job of pending) {
    const payload = gradePayload(job);
    if (!payload.success) {
      const reason = payload.error.issues
        .map((i) => `${i.path.join(".")}: ${i.message}`)
        .join("; ");
      await markUnqueueable(db, job.id, job.studyId, reason);
      log?.error(
        { event: "job.unqueueable", jobId: job.jobId, reason },
        "grading job cannot be queued: marked FAILED",
      );
      continue;
    }
    // Same jobId twice is a no-op in BullMQ: a crash after `add` and before the update is harmless.
    await queue.add(QUEUES.gradeStudy, payload.data, { jobId: job.jobId });
    await db.gradingJob.update({ where: { id: job.id }, data: { enqueuedAt: new Date() } });
    enqueued += 1;
    log?.info(
      { event: "job.enqueued", jobId: job.jobId, studyInstanceUid: payload.data.studyInstanceUid },
      "grading job enqueued",
    );
  }
  return enqueued;
}

/** The `grade-study` payload of a recorded grading job, checked against the contract. */
function gradePayload(row: {
  studyId: string;
  revision: number;
  study: { studyInstanceUid: string };
}) {
  return GradeStudyJob.safeParse({
    schemaVersion: 1,
    studyId: row.studyId,
    studyInstanceUid: row.study.studyInstanceUid,
    revision: row.revision,
  });
}

async function markUnqueueable(db: Db, id: string, studyId: string, reason: string) {
  const message = reason.slice(0, 1000);
  await db.$transaction([
    db.gradingJob.update({
      where: { id },
      data: {
        status: "FAILED",
        finishedAt: new Date(),
        errorCode: "INVALID_JOB",
        errorMessage: message,
      },
    }),
    db.study.update({
      where: { id: studyId },
      data: { status: "FAILED", statusReason: `INVALID_JOB: ${message}` },
    }),
    db.auditEvent.create({
      data: {
        event: "job.unqueueable",
        actor: "listener",
        details: { gradingJobId: id, reason: message },
      },
    }),
  ]);
}

export interface ReconcileResult {
  /** Jobs PostgreSQL expects in Redis that were not there: added again under the same id. */
  requeued: string[];
  /** Jobs Redis holds as failed for good whose failure never reached PostgreSQL: recorded now. */
  failed: string[];
}

/**
 * The database is the truth. Every grading job that PostgreSQL says is queued or running must
 * exist in Redis; one that does not (Redis restarted without persistence, failed over, flushed)
 * is added again under its deterministic id, so it is graded once. A job that BullMQ failed for
 * good while the worker could not record it (database down at that moment) is recorded here, so
 * no study stays GRADING forever. Rows enqueued less than `graceMs` ago are left alone.
 */
export async function reconcileGradingJobs(
  db: Db,
  queue: Queue,
  log?: Logger,
  opts: { now?: Date; graceMs?: number; limit?: number } = {},
): Promise<ReconcileResult> {
  const now = opts.now ?? new Date();
  const rows = await db.gradingJob.findMany({
    where: {
      queue: QUEUES.gradeStudy,
      status: { in: ["PENDING", "QUEUED", "ACTIVE"] },
      enqueuedAt: { not: null, lt: new Date(now.getTime() - (opts.graceMs ?? 30_000)) },
    },
    include: { study: { select: { studyInstanceUid: true } } },
    orderBy: { createdAt: "asc" },
    take: opts.limit ?? 500,
  });
  const result: ReconcileResult = { requeued: [], failed: [] };
  for (const row of rows) {
    const job = await queue.getJob(row.jobId);
    if (!job) {
      const payload = gradePayload(row);
      if (!payload.success) {
        await markUnqueueable(db, row.id, row.studyId, payload.error.message);
        continue;
      }
      await queue.add(QUEUES.gradeStudy, payload.data, { jobId: row.jobId });
      await db.$transaction([
        db.gradingJob.update({ where: { id: row.id }, data: { enqueuedAt: new Date() } }),
        db.auditEvent.create({
          data: {
            event: "job.requeued",
            actor: "listener",
            studyInstanceUid: row.study.studyInstanceUid,
            details: { jobId: row.jobId, revision: row.revision, status: row.status },
          },
        }),
      ]);
      result.requeued.push(row.jobId);
      log?.warn(
        { event: "job.requeued", jobId: row.jobId, studyInstanceUid: row.study.studyInstanceUid },
        "grading job missing from Redis: added again",
      );
      continue;
    }
    if ((await job.getState()) === "failed" && job.attemptsMade >= (job.opts.attempts ?? 1)) {
      const message = (job.failedReason || "failed in the queue").slice(0, 1000);
      await db.$transaction([
        db.gradingJob.updateMany({
          where: { id: row.id, status: { not: "COMPLETED" } },
          data: {
            status: "FAILED",
            finishedAt: new Date(),
            errorCode: "RETRIES_EXHAUSTED",
            errorMessage: message,
          },
        }),
        db.study.updateMany({
          where: { id: row.studyId, revision: row.revision, status: { in: ["QUEUED", "GRADING"] } },
          data: { status: "FAILED", statusReason: `RETRIES_EXHAUSTED: ${message}` },
        }),
      ]);
      result.failed.push(row.jobId);
      log?.warn(
        { event: "job.failure-reconciled", jobId: row.jobId },
        "recorded a failure the worker could not",
      );
    }
  }
  return result;
}

/**
 * Runs assembly and the outbox every `intervalMs`, and the reconciler every `reconcileMs` (and at
 * once at start-up), until stopped; errors are logged and retried on the next tick.
 */
export function startAssembler(opts: {
  db: Db;
  queue: Queue;
  stableSeconds: number;
  log: Logger;
  intervalMs?: number;
  reconcileMs?: number;
}): { stop: () => Promise<void> } {
  const intervalMs = opts.intervalMs ?? Math.min(1000, (opts.stableSeconds * 1000) / 4);
  const reconcileMs = opts.reconcileMs ?? 60_000;
  let stopped = false;
  let running: Promise<void> | undefined;
  let lastReconcile = 0;
  const tick = async () => {
    try {
      const { queued, refused } = await assembleStableStudies(opts.db, opts.stableSeconds);
      for (const s of queued) opts.log.info({ event: "study.stable", ...s }, "study stable");
      for (const s of refused) opts.log.info({ event: "study.refused", ...s }, "study refused");
      await enqueuePendingJobs(opts.db, opts.queue, opts.log);
      if (Date.now() - lastReconcile >= reconcileMs) {
        lastReconcile = Date.now();
        await reconcileGradingJobs(opts.db, opts.queue, opts.log, {
          graceMs: Math.min(30_000, reconcileMs),
        });
      }
    } catch (error) {
      opts.log.error(
        { event: "assembler.error", err: errorFields(error) },
        "study assembly failed; retrying",
      );
    }
  };
  const run = () => {
    if (stopped || running) return; // one tick at a time; a slow tick delays the next
    running = tick().finally(() => {
      running = undefined;
    });
  };
  const timer = setInterval(run, intervalMs);
  run();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
