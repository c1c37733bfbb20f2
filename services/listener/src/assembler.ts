/**
 * Study assembly, like Orthanc's "stable study": a study is ready when no instance has arrived
 * for STUDY_STABLE_SECONDS. Then exactly one grading job is recorded for its current revision
 * (PostgreSQL) and put on the `grade-study` queue (Redis) through a transactional outbox, so a
 * crash between the two never loses or doubles a job. All state is in PostgreSQL: a restarted
 * listener carries on where the last one stopped.
 */
import { GradeStudyJob, QUEUES, studyRevisionJobId } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import type { Logger } from "@kneegrade/log";
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

/** The outbox: puts every recorded but not yet enqueued grading job on its queue. */
export async function enqueuePendingJobs(db: Db, queue: Queue, log?: Logger): Promise<number> {
  const pending = await db.gradingJob.findMany({
    where: { enqueuedAt: null, queue: QUEUES.gradeStudy },
    include: { study: { select: { studyInstanceUid: true } } },
    orderBy: { createdAt: "asc" },
    take: 100,
  });
  for (const job of pending) {
    const payload = GradeStudyJob.parse({
      schemaVersion: 1,
      studyId: job.studyId,
      studyInstanceUid: job.study.studyInstanceUid,
      revision: job.revision,
    });
    // Same jobId twice is a no-op in BullMQ: a crash after `add` and before the update is harmless.
    await queue.add(QUEUES.gradeStudy, payload, { jobId: job.jobId });
    await db.gradingJob.update({ where: { id: job.id }, data: { enqueuedAt: new Date() } });
    log?.info(
      { event: "job.enqueued", jobId: job.jobId, studyInstanceUid: payload.studyInstanceUid },
      "grading job enqueued",
    );
  }
  return pending.length;
}

/** Runs assembly and the outbox every `intervalMs` until stopped; errors are logged and retried. */
export function startAssembler(opts: {
  db: Db;
  queue: Queue;
  stableSeconds: number;
  log: Logger;
  intervalMs?: number;
}): { stop: () => Promise<void> } {
  const intervalMs = opts.intervalMs ?? Math.min(1000, (opts.stableSeconds * 1000) / 4);
  let stopped = false;
  let running: Promise<void> | undefined;
  const tick = async () => {
    try {
      const { queued, refused } = await assembleStableStudies(opts.db, opts.stableSeconds);
      for (const s of queued) opts.log.info({ event: "study.stable", ...s }, "study stable");
      for (const s of refused) opts.log.info({ event: "study.refused", ...s }, "study refused");
      await enqueuePendingJobs(opts.db, opts.queue, opts.log);
    } catch (error) {
      opts.log.error({ event: "assembler.error", err: error }, "study assembly failed; retrying");
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
