/**
 * BullMQ wiring shared by the services: one Redis connection setting, one key prefix, the queue
 * names from @kneegrade/contracts. Redis carries jobs only; their truth is in PostgreSQL.
 */
import { loadConfig } from "@kneegrade/config";
import { QUEUES, type QueueName } from "@kneegrade/contracts";
import { errorFields, type Logger } from "@kneegrade/log";
import { type ConnectionOptions, type Job, type JobsOptions, Queue, Worker } from "bullmq";
import { Redis, type RedisOptions } from "ioredis";
import { DELIVERY_BACKOFF, deliveryBackoffStrategy, deliverySchedule } from "./delivery-backoff.ts";

export * from "./delivery-backoff.ts";

export interface QueueConfig {
  REDIS_URL: string;
  QUEUE_PREFIX: string;
  /** Attempts per job and the first retry's delay (doubling after each); defaults: packages/config. */
  JOB_ATTEMPTS?: number;
  JOB_BACKOFF_SECONDS?: number;
  /**
   * `report-study` jobs wait out PACS outages on a schedule of their own (delivery-backoff.ts):
   * the delay doubles up to a ceiling, and the attempts span `DELIVERY_GIVE_UP_HOURS` unless set.
   */
  DELIVERY_ATTEMPTS?: number | undefined;
  DELIVERY_BACKOFF_SECONDS?: number;
  DELIVERY_BACKOFF_MAX_SECONDS?: number;
  DELIVERY_GIVE_UP_HOURS?: number;
}

/** Connection options for BullMQ; workers need `maxRetriesPerRequest: null`. */
export function redisConnection(redisUrl: string): ConnectionOptions {
  const url = new URL(redisUrl);
  return {
    host: url.hostname,
    port: Number(url.port || 6379),
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
    tls: url.protocol === "rediss:" ? {} : undefined,
    maxRetriesPerRequest: null,
  };
}

/** Finished jobs are kept a week (failed ones a month) for `kneegrade status` and the queue view. */
const RETENTION: JobsOptions = {
  removeOnComplete: { age: 7 * 24 * 3600 },
  removeOnFail: { age: 30 * 24 * 3600 },
};

/** The retry policy's defaults are the configuration's (JOB_* and DELIVERY_* in packages/config). */
const CONFIG_DEFAULTS = loadConfig({});

/**
 * The retry policy of a queue's jobs. Grading jobs: `JOB_ATTEMPTS`, BullMQ's exponential backoff
 * from `JOB_BACKOFF_SECONDS`. Report deliveries: the capped schedule of delivery-backoff.ts, its
 * attempts spanning `DELIVERY_GIVE_UP_HOURS` (or `DELIVERY_ATTEMPTS` when set).
 */
export function retryOptions(
  name: QueueName,
  config: QueueConfig,
): Required<Pick<JobsOptions, "attempts" | "backoff">> {
  if (name === QUEUES.reportStudy) {
    const schedule = deliverySchedule({
      DELIVERY_BACKOFF_SECONDS:
        config.DELIVERY_BACKOFF_SECONDS ?? CONFIG_DEFAULTS.DELIVERY_BACKOFF_SECONDS,
      DELIVERY_BACKOFF_MAX_SECONDS:
        config.DELIVERY_BACKOFF_MAX_SECONDS ?? CONFIG_DEFAULTS.DELIVERY_BACKOFF_MAX_SECONDS,
      DELIVERY_GIVE_UP_HOURS:
        config.DELIVERY_GIVE_UP_HOURS ?? CONFIG_DEFAULTS.DELIVERY_GIVE_UP_HOURS,
      DELIVERY_ATTEMPTS: config.DELIVERY_ATTEMPTS,
    });
    return {
      attempts: schedule.attempts,
      backoff: { type: DELIVERY_BACKOFF, delay: schedule.baseMs },
    };
  }
  return {
    attempts: config.JOB_ATTEMPTS ?? CONFIG_DEFAULTS.JOB_ATTEMPTS,
    backoff: {
      type: "exponential",
      delay: (config.JOB_BACKOFF_SECONDS ?? CONFIG_DEFAULTS.JOB_BACKOFF_SECONDS) * 1000,
    },
  };
}

/**
 * A queue whose jobs get the retry policy of their kind ({@link retryOptions}): retries with
 * backoff for transient errors; permanent ones are thrown as UnrecoverableError and fail at once.
 */
export function createQueue(name: QueueName, config: QueueConfig): Queue {
  return new Queue(name, {
    connection: redisConnection(config.REDIS_URL),
    prefix: config.QUEUE_PREFIX,
    defaultJobOptions: { ...RETENTION, ...retryOptions(name, config) },
  });
}

/**
 * Whether a `failed` event is the job's last word: BullMQ's UnrecoverableError (recognised by its
 * name, also across processes), or no attempt left. Then the failure must be recorded; otherwise
 * BullMQ retries.
 */
export function isFinalFailure(job: Pick<Job, "attemptsMade" | "opts">, error: Error): boolean {
  return error.name === "UnrecoverableError" || job.attemptsMade >= (job.opts.attempts ?? 1);
}

/**
 * BullMQ's jobs live only in Redis: without persistence (AOF) a Redis restart loses every queued
 * job. PostgreSQL stays the truth and the listener's reconciler re-adds lost jobs, but production
 * should run Redis with `appendonly yes` (docs/DEPLOYMENT.md). Says so at start-up when it is off;
 * returns the setting ("yes", "no", or "unknown" when CONFIG is not allowed, e.g. managed Redis).
 */
export async function warnWithoutRedisPersistence(
  redisUrl: string,
  log: { warn: (obj: object, msg: string) => void },
): Promise<string> {
  let appendonly = "unknown";
  const redis = new Redis({
    ...(redisConnection(redisUrl) as RedisOptions),
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
  });
  redis.on("error", () => {}); // the answer (or its absence) is what matters here
  try {
    await redis.connect();
    const reply = (await redis.config("GET", "appendonly")) as string[];
    appendonly = reply[1] ?? "unknown";
  } catch {
    appendonly = "unknown";
  } finally {
    redis.disconnect();
  }
  if (appendonly !== "yes") {
    log.warn(
      { event: "redis.no-persistence", appendonly },
      "Redis runs without AOF persistence: a restart loses queued jobs (they are re-added from PostgreSQL by the reconciler); set appendonly yes in production",
    );
  }
  return appendonly;
}

/**
 * Runs `record` (the database write that makes a job's final failure known) until it succeeds,
 * with exponential backoff: `attempts` tries starting at `delayMs`. A queue's `failed` event is
 * the only moment the failure is known, so a database hiccup must not lose it. Returns whether it
 * was recorded; the caller logs when it was not (the listener's reconciler still catches
 * grade-study jobs).
 */
export async function recordDurably(
  record: () => Promise<unknown>,
  opts: {
    attempts?: number;
    delayMs?: number;
    onRetry?: (attempt: number, error: unknown) => void;
  } = {},
): Promise<boolean> {
  const attempts = opts.attempts ?? 8;
  let delay = opts.delayMs ?? 500;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      await record();
      return true;
    } catch (error) {
      if (attempt === attempts) return false;
      opts.onRetry?.(attempt, error);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 30_000);
    }
  }
  return false;
}

/** What became of a job, as the job metrics count it. */
export type JobOutcome = "completed" | "failed" | "retried";

/** The two job metrics of packages/ops, as the factory uses them. */
export interface JobMetrics {
  jobs: { inc(labels: { queue: string; outcome: JobOutcome }): void };
  jobSeconds: { observe(labels: { queue: string }, seconds: number): void };
}

export interface JobWorkerOptions<T, R> {
  queue: string;
  config: {
    REDIS_URL: string;
    QUEUE_PREFIX: string;
    JOB_LOCK_SECONDS: number;
    /** The ceiling of the delivery retries' delay (defaults: packages/config). */
    DELIVERY_BACKOFF_MAX_SECONDS?: number;
  };
  concurrency: number;
  /** Recorded on each job it takes (BullMQ `processedBy`, shown in the queue view). */
  name?: string;
  process: (job: Job<T>) => Promise<R>;
  /** The database write that makes a job's final failure known (retried until it succeeds). */
  recordFinalFailure: (job: Job<T>, error: Error) => Promise<unknown>;
  log: Logger;
  /** Log events: the worker's own errors; a final failure not recorded yet (retrying) or at all. */
  events: { error: string; recordRetry: string; unrecorded: string };
  /** Where every job's outcome and a completed job's run time are counted (packages/ops metrics). */
  metrics?: JobMetrics;
  onCompleted?: (job: Job<T>, result: R) => void;
  /** A failure BullMQ will retry (attempts left, not unrecoverable). */
  onRetry?: (job: Job<T>, error: Error) => void;
}

/**
 * One BullMQ worker factory for the services that take jobs (worker: `grade-study`, reporter:
 * `report-study`): the connection, the lock that hands a dead worker's jobs to another, the
 * outcome of every job, and the one durable final-failure path — a job's final failure is known
 * only in BullMQ's `failed` event, so its database record is retried with backoff
 * ({@link recordDurably}) and logged when it still cannot be written.
 */
export function startJobWorker<T, R>(o: JobWorkerOptions<T, R>): Worker<T, R> {
  const worker = new Worker<T, R>(o.queue, o.process, {
    ...(o.name ? { name: o.name } : {}),
    connection: redisConnection(o.config.REDIS_URL),
    prefix: o.config.QUEUE_PREFIX,
    concurrency: o.concurrency,
    // A worker that dies mid-job (killed, out of memory) stops renewing its lock: after
    // JOB_LOCK_SECONDS another worker takes the job again.
    lockDuration: o.config.JOB_LOCK_SECONDS * 1000,
    stalledInterval: o.config.JOB_LOCK_SECONDS * 1000,
    // Delivery jobs name a custom backoff, which BullMQ computes in the worker that failed them.
    settings: {
      backoffStrategy: deliveryBackoffStrategy(
        (o.config.DELIVERY_BACKOFF_MAX_SECONDS ?? CONFIG_DEFAULTS.DELIVERY_BACKOFF_MAX_SECONDS) *
          1000,
      ),
    },
  });
  worker.on("completed", (job, result) => {
    o.metrics?.jobs.inc({ queue: o.queue, outcome: "completed" });
    if (job.processedOn) {
      o.metrics?.jobSeconds.observe({ queue: o.queue }, (Date.now() - job.processedOn) / 1000);
    }
    o.onCompleted?.(job, result);
  });
  worker.on("failed", (job, error) => {
    if (!job) return;
    const final = isFinalFailure(job, error);
    o.metrics?.jobs.inc({ queue: o.queue, outcome: final ? "failed" : "retried" });
    if (!final) {
      o.onRetry?.(job, error);
      return;
    }
    void recordDurably(() => o.recordFinalFailure(job, error), {
      onRetry: (attempt, e) =>
        o.log.warn(
          { event: o.events.recordRetry, jobId: job.id, attempt, err: errorFields(e) },
          "could not record the job's final failure yet; retrying",
        ),
    }).then((ok) => {
      if (!ok) {
        o.log.error(
          { event: o.events.unrecorded, jobId: job.id },
          "could not record the job's final failure",
        );
      }
    });
  });
  worker.on("error", (error) => o.log.error({ event: o.events.error, err: error }, "worker error"));
  return worker;
}
