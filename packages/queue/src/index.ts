/**
 * BullMQ wiring shared by the services: one Redis connection setting, one key prefix, the queue
 * names from @kneegrade/contracts. Redis carries jobs only; their truth is in PostgreSQL.
 */
import { QUEUES, type QueueName } from "@kneegrade/contracts";
import { type ConnectionOptions, type Job, type JobsOptions, Queue } from "bullmq";

export interface QueueConfig {
  REDIS_URL: string;
  QUEUE_PREFIX: string;
  /** Attempts per job and the first retry's delay (doubling after each); defaults below. */
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

/**
 * Retries with exponential backoff for transient errors; permanent ones are thrown as
 * UnrecoverableError and fail at once. Finished jobs are kept a week for `kneegrade status`.
 */
export const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 5,
  backoff: { type: "exponential", delay: 5_000 },
  removeOnComplete: { age: 7 * 24 * 3600 },
  removeOnFail: { age: 30 * 24 * 3600 },
};

/** A queue whose jobs get the retry policy of their kind (delivery for `report-study`). */
export function createQueue(name: QueueName, config: QueueConfig): Queue {
  const delivery = name === QUEUES.reportStudy;
  const attempts = delivery ? config.DELIVERY_ATTEMPTS : config.JOB_ATTEMPTS;
  const backoffSeconds = delivery ? config.DELIVERY_BACKOFF_SECONDS : config.JOB_BACKOFF_SECONDS;
  return new Queue(name, {
    connection: redisConnection(config.REDIS_URL),
    prefix: config.QUEUE_PREFIX,
    defaultJobOptions: {
      ...DEFAULT_JOB_OPTIONS,
      ...(attempts ? { attempts } : {}),
      ...(backoffSeconds !== undefined
        ? { backoff: { type: "exponential", delay: backoffSeconds * 1000 } }
        : {}),
    },
  });
}

/**
 * Whether a `failed` event is the job's last word: an UnrecoverableError (a PermanentError carries
 * that name), or no attempt left. Then the failure must be recorded; otherwise BullMQ retries.
 */
export function isFinalFailure(job: Pick<Job, "attemptsMade" | "opts">, error: Error): boolean {
  return error.name === "UnrecoverableError" || job.attemptsMade >= (job.opts.attempts ?? 1);
}
