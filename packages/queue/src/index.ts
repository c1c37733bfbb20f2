/**
 * BullMQ wiring shared by the services: one Redis connection setting, one key prefix, the queue
 * names from @kneegrade/contracts. Redis carries jobs only; their truth is in PostgreSQL.
 */
import { loadConfig } from "@kneegrade/config";
import { QUEUES, type QueueName } from "@kneegrade/contracts";
import { type ConnectionOptions, type Job, type JobsOptions, Queue } from "bullmq";
import { Redis, type RedisOptions } from "ioredis";

export interface QueueConfig {
  REDIS_URL: string;
  QUEUE_PREFIX: string;
  /** Attempts per job and the first retry's delay (doubling after each); defaults: packages/config. */
  JOB_ATTEMPTS?: number;
  JOB_BACKOFF_SECONDS?: number;
  /** The same for `report-study` jobs: delivery waits out PACS outages, so it has its own. */
  DELIVERY_ATTEMPTS?: number;
  DELIVERY_BACKOFF_SECONDS?: number;
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
 * A queue whose jobs get the retry policy of their kind (delivery for `report-study`): retries
 * with exponential backoff for transient errors; permanent ones are thrown as UnrecoverableError
 * and fail at once.
 */
export function createQueue(name: QueueName, config: QueueConfig): Queue {
  const delivery = name === QUEUES.reportStudy;
  const attempts = delivery
    ? (config.DELIVERY_ATTEMPTS ?? CONFIG_DEFAULTS.DELIVERY_ATTEMPTS)
    : (config.JOB_ATTEMPTS ?? CONFIG_DEFAULTS.JOB_ATTEMPTS);
  const backoffSeconds = delivery
    ? (config.DELIVERY_BACKOFF_SECONDS ?? CONFIG_DEFAULTS.DELIVERY_BACKOFF_SECONDS)
    : (config.JOB_BACKOFF_SECONDS ?? CONFIG_DEFAULTS.JOB_BACKOFF_SECONDS);
  return new Queue(name, {
    connection: redisConnection(config.REDIS_URL),
    prefix: config.QUEUE_PREFIX,
    defaultJobOptions: {
      ...RETENTION,
      attempts,
      backoff: { type: "exponential", delay: backoffSeconds * 1000 },
    },
  });
}

/**
 * Whether a `failed` event is the job's last word: BullMQ's UnrecoverableError (recognised by its
 * name, also across processes), or no attempt left. Then the failure must be recorded; otherwise BullMQ retries.
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
