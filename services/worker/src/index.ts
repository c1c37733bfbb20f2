/**
 * The worker service: takes `grade-study` jobs, grades each knee with the PIM ensemble
 * (decode → localise → crop → predict), records the results and queues the report.
 *
 * Without a usable model it takes no jobs: they wait in their queue, nothing is lost, and the
 * reason is logged (docs/OPERATIONS.md). SIGTERM (through `kneegrade serve`) lets running jobs
 * finish before the process ends; a job cut short is retried by BullMQ.
 */
import { hostname } from "node:os";
import type { Config } from "@kneegrade/config";
import { QUEUES } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { openPredictor } from "@kneegrade/grading";
import { InferenceError, type ModelCheck, type ModelCheckCode } from "@kneegrade/inference";
import { errorFields, type Logger } from "@kneegrade/log";
import { createMetrics, type Metrics } from "@kneegrade/ops";
import { createQueue, startJobWorker } from "@kneegrade/queue";
import type { Job } from "bullmq";
import { processGradeJob, recordFinalFailure } from "./job.ts";

export type { ModelCheck } from "@kneegrade/inference";
export * from "./job.ts";
export { type RunningWorkerThread, startWorkerThread } from "./thread.ts";

/** The model failures that leave the worker waiting for a usable model (not a crash). */
const MODEL_UNAVAILABLE: readonly string[] = [
  "MODEL_MISSING",
  "MODEL_INVALID",
  "MODEL_NOT_FOR_PATIENTS",
] satisfies ModelCheckCode[];
const modelUnavailable = (code: string): code is ModelCheckCode => MODEL_UNAVAILABLE.includes(code);

export interface RunningWorker {
  model: ModelCheck;
  /** Execution provider of each member, when a model is loaded. */
  providers: Record<string, string>;
  close(): Promise<void>;
}

export async function startWorker(
  config: Config,
  db: Db,
  log: Logger,
  /** Where to record grading (the process's ops server serves it); a private one if absent. */
  metrics: Metrics = createMetrics(),
): Promise<RunningWorker> {
  metrics.modelLoaded.set(0);
  // The model is read, hashed and opened once (Ensemble.open checks the manifest and the files).
  let opened: Awaited<ReturnType<typeof openPredictor>>;
  try {
    opened = await openPredictor(config, log, metrics);
  } catch (error) {
    if (!(error instanceof InferenceError) || !modelUnavailable(error.code)) throw error;
    const model = { ok: false, code: error.code, reason: error.message } as const;
    log.error(
      { event: "worker.model-unavailable", code: model.code, reason: model.reason },
      "no usable model installed: grade-study jobs stay queued until one is (see docs/OPERATIONS.md)",
    );
    return { model, providers: {}, close: async () => {} };
  }
  const model: ModelCheck = {
    ok: true,
    manifest: opened.ensemble.manifest,
    version: opened.ensemble.version,
  };
  const { providers } = opened;
  for (const [member, provider] of Object.entries(providers)) {
    metrics.modelInfo.set(
      { version: opened.ensemble.version, status: model.manifest.status, member, provider },
      1,
    );
  }
  metrics.modelLoaded.set(1);
  if (model.manifest.status === "smoke") {
    log.warn(
      { event: "worker.test-model", modelVersion: opened.ensemble.version },
      "ALLOW_TEST_MODEL: grading with a smoke-test model; its grades mean nothing clinically",
    );
  }
  const reportQueue = createQueue(QUEUES.reportStudy, config);
  reportQueue.on("error", (error) =>
    log.error(
      { event: "queue.error", err: errorFields(error) },
      "Redis error (report-study queue)",
    ),
  );
  // Recorded on each job it takes (BullMQ `processedBy`, shown in the queue view): which pod or
  // process graded what.
  const name = `${hostname()}:${process.pid}`;
  const worker = startJobWorker({
    queue: QUEUES.gradeStudy,
    config,
    concurrency: config.WORKER_CONCURRENCY,
    name,
    process: async (job: Job<unknown>) =>
      processGradeJob(job.data, job.attemptsMade + 1, {
        db,
        predictor: opened.predictor,
        model: { version: opened.ensemble.version, status: model.manifest.status, providers },
        // The report queue gives its jobs the delivery retry policy (DELIVERY_*).
        addReportJob: (payload, jobId) => reportQueue.add(QUEUES.reportStudy, payload, { jobId }),
        log,
        metrics,
      }),
    // Retried until PostgreSQL takes it; if it never does, the listener's reconciler records it.
    recordFinalFailure: (job, error) => recordFinalFailure(db, job.data, error, log),
    log,
    events: {
      error: "worker.error",
      recordRetry: "job.failure-record-retry",
      unrecorded: "job.failure-unrecorded",
    },
    metrics,
    onCompleted: (job, summary) =>
      log.info({ event: "job.completed", jobId: job.id, ...summary }, "study graded"),
    onRetry: (job, error) =>
      log.warn(
        {
          event: "job.retry",
          jobId: job.id,
          attempt: job.attemptsMade,
          of: job.opts.attempts ?? 1,
          err: error,
        },
        "grading failed; BullMQ retries it with backoff",
      ),
  });
  log.info(
    {
      event: "worker.started",
      worker: name,
      modelVersion: opened.ensemble.version,
      modelStatus: model.manifest.status,
      providers,
      concurrency: config.WORKER_CONCURRENCY,
    },
    "worker taking grade-study jobs",
  );
  return {
    model,
    providers,
    close: async () => {
      metrics.modelLoaded.set(0);
      await worker.close(); // waits for running jobs
      await reportQueue.close();
      await opened.close();
    },
  };
}
