/**
 * The retry schedule of report deliveries (`report-study` jobs): the delay doubles from
 * `DELIVERY_BACKOFF_SECONDS` up to `DELIVERY_BACKOFF_MAX_SECONDS`, so a destination that is back
 * gets the waiting reports within one ceiling (the PACS sooner, by the reporter's probe), and the
 * attempts are as many as it takes to keep retrying for `DELIVERY_GIVE_UP_HOURS` before the dead
 * letter. Uncapped doubling left reports that failed a few times waiting many minutes after the
 * PACS was back, and a raw attempt count hides how long a report is retried.
 *
 * BullMQ computes a job's next delay in the worker that failed it: jobs carry the backoff type
 * {@link DELIVERY_BACKOFF} and their first delay; every worker of startJobWorker knows the strategy.
 */
import type { BackoffStrategy, MinimalJob } from "bullmq";

/** The backoff type of `report-study` jobs (BullMQ calls the worker's strategy for it). */
export const DELIVERY_BACKOFF = "delivery-capped-exponential";

/** The delay before retry `retry` (1: the first retry): `baseMs` doubling, at most `maxMs`. */
export function deliveryDelayMs(retry: number, baseMs: number, maxMs: number): number {
  if (!(retry >= 1)) throw new RangeError(`retry must be 1 or more, not ${retry}`);
  // 2 ** 1100 is Infinity: still capped.
  return Math.round(Math.min(maxMs, baseMs * 2 ** (retry - 1)));
}

/** How long `attempts` attempts keep retrying: the sum of the delays between them. */
export function deliverySpanMs(attempts: number, baseMs: number, maxMs: number): number {
  let span = 0;
  for (let retry = 1; retry < attempts; retry++) {
    const delay = deliveryDelayMs(retry, baseMs, maxMs);
    if (delay >= maxMs) return span + (attempts - retry) * delay;
    span += delay;
  }
  return span;
}

/**
 * The fewest attempts whose retries span at least `horizonMs` (the last one is made no earlier
 * than that after the first, attempt durations and early releases aside).
 */
export function attemptsWithin(horizonMs: number, baseMs: number, maxMs: number): number {
  if (!(baseMs > 0 && maxMs > 0)) {
    throw new RangeError("the delivery backoff and its ceiling must be more than 0");
  }
  let attempts = 1;
  let span = 0;
  while (span < horizonMs) {
    const delay = deliveryDelayMs(attempts, baseMs, maxMs);
    if (delay >= maxMs) return attempts + Math.ceil((horizonMs - span) / delay);
    span += delay;
    attempts += 1;
  }
  return attempts;
}

/** The delivery settings, in the configuration's units (packages/config: DELIVERY_*). */
export interface DeliverySettings {
  DELIVERY_BACKOFF_SECONDS: number;
  DELIVERY_BACKOFF_MAX_SECONDS: number;
  DELIVERY_GIVE_UP_HOURS: number;
  /** Set: exactly this many attempts, whatever span they give. */
  DELIVERY_ATTEMPTS?: number | undefined;
}

export interface DeliverySchedule {
  baseMs: number;
  maxMs: number;
  attempts: number;
  /** How long those attempts keep retrying before the dead letter. */
  spanMs: number;
  /** Whether the attempts were set (`DELIVERY_ATTEMPTS`) rather than derived from the horizon. */
  attemptsSet: boolean;
}

/** The schedule the settings give. */
export function deliverySchedule(s: DeliverySettings): DeliverySchedule {
  const baseMs = s.DELIVERY_BACKOFF_SECONDS * 1000;
  const maxMs = s.DELIVERY_BACKOFF_MAX_SECONDS * 1000;
  const attemptsSet = s.DELIVERY_ATTEMPTS !== undefined;
  const attempts =
    s.DELIVERY_ATTEMPTS ?? attemptsWithin(s.DELIVERY_GIVE_UP_HOURS * 3600_000, baseMs, maxMs);
  return { baseMs, maxMs, attempts, spanMs: deliverySpanMs(attempts, baseMs, maxMs), attemptsSet };
}

/**
 * BullMQ's custom backoff strategy for {@link DELIVERY_BACKOFF}: the job's own first delay (as its
 * queue added it), doubling up to `maxMs`. Any other custom type is an error BullMQ reports on
 * the job (the built-in `fixed` and `exponential`, which grading jobs use, never come here).
 */
export function deliveryBackoffStrategy(maxMs: number): BackoffStrategy {
  return (attemptsMade: number, type?: string, _error?: Error, job?: MinimalJob) => {
    if (type !== DELIVERY_BACKOFF) throw new Error(`unknown backoff strategy ${type}`);
    const backoff = job?.opts.backoff;
    const baseMs = typeof backoff === "object" ? (backoff.delay ?? 0) : (backoff ?? 0);
    return deliveryDelayMs(attemptsMade, baseMs, maxMs);
  };
}
