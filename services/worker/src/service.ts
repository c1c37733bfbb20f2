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
import type { Job, Queue } from "bullmq";
import { type JobContext, processGradeJob, recordFinalFailure } from "./job.ts";
import { startPreparePool } from "./prepare-pool.ts";

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

type Opened = Awaited<ReturnType<typeof openPredictor>>;

export async function startWorker(
  config: Config,
  db: Db,
  log: Logger,
  /** Where to record grading (the process's ops server serves it); a private one if absent. */
  metrics: Metrics = createMetrics(),
): Promise<RunningWorker> {
  metrics.modelLoaded.set(0);
  const opened = await openModel(config, log, metrics);
  if (!opened.ok) return { model: opened.model, providers: {}, close: async () => {} };
  const { model, predictor } = opened;
  const pool =
    config.WORKER_PREPARE_THREADS > 0
      ? await startPreparePool(config.WORKER_PREPARE_THREADS, predictor.predictor, log)
      : undefined;
  const reportQueue = openReportQueue(config, log);
  const name = `${hostname()}:${process.pid}`;
  const ctx: JobContext = {
    db,
    predictor: predictor.predictor,
    model: {
      version: predictor.ensemble.version,
      status: model.manifest.status,
      providers: predictor.providers,
    },
    // The report queue gives its jobs the delivery retry policy (DELIVERY_*).
    addReportJob: (payload, jobId) => reportQueue.add(QUEUES.reportStudy, payload, { jobId }),
    log,
    metrics,
    ...(pool ? { prepare: pool.prepare } : {}),
  };
  const worker = takeJobs(config, db, log, metrics, name, ctx);
  log.info(
    {
      event: "worker.started",
      worker: name,
      modelVersion: ctx.model.version,
      modelStatus: ctx.model.status,
      providers: ctx.model.providers,
      concurrency: config.WORKER_CONCURRENCY,
      prepareThreads: config.WORKER_PREPARE_THREADS,
    },
    "worker taking grade-study jobs",
  );
  return {
    model,
    providers: predictor.providers,
    close: async () => {
      metrics.modelLoaded.set(0);
      await worker.close(); // waits for running jobs
      await pool?.close();
      await reportQueue.close();
      await predictor.close();
    },
  };
}

/**
 * The model, read, hashed and opened once (Ensemble.open checks the manifest and the files), its
 * identity in the metrics; or why there is no usable one.
 */
async function openModel(
  config: Config,
  log: Logger,
  metrics: Metrics,
): Promise<
  | { ok: true; model: Extract<ModelCheck, { ok: true }>; predictor: Opened }
  | { ok: false; model: ModelCheck }
> {
  let opened: Opened;
  try {
    opened = await openPredictor(config, log, metrics);
  } catch (error) {
    if (!(error instanceof InferenceError) || !modelUnavailable(error.code)) throw error;
    const model = { ok: false, code: error.code, reason: error.message } as const;
    log.error(
      { event: "worker.model-unavailable", code: model.code, reason: model.reason },
      "no usable model installed: grade-study jobs stay queued until one is (see docs/OPERATIONS.md)",
    );
    return { ok: false, model };
  }
  const model = {
    ok: true,
    manifest: opened.ensemble.manifest,
    version: opened.ensemble.version,
  } as const;
  for (const [member, provider] of Object.entries(opened.providers)) {
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
  return { ok: true, model, predictor: opened };
}

function openReportQueue(config: Config, log: Logger): Queue {
  const reportQueue = createQueue(QUEUES.reportStudy, config);
  reportQueue.on("error", (error) =>
    log.error(
      { event: "queue.error", err: errorFields(error) },
      "Redis error (report-study queue)",
    ),
  );
  return reportQueue;
}

/** The BullMQ worker on `grade-study`, WORKER_CONCURRENCY jobs at once. */
function takeJobs(
  config: Config,
  db: Db,
  log: Logger,
  metrics: Metrics,
  /** Recorded on each job it takes (BullMQ `processedBy`): which pod or process graded what. */
  name: string,
  ctx: JobContext,
) {
  return startJobWorker({
    queue: QUEUES.gradeStudy,
    config,
    concurrency: config.WORKER_CONCURRENCY,
    name,
    process: async (job: Job<unknown>) => processGradeJob(job.data, job.attemptsMade + 1, ctx),
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
}
