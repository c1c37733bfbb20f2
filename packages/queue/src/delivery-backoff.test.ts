/**
 * The delivery schedule in BullMQ on the real Redis: a `report-study` job that keeps failing is
 * retried at the capped delays, as many times as its give-up horizon takes, and its last failure
 * is final; a `grade-study` job on a worker of the same factory keeps its uncapped doubling.
 */
import { QUEUES } from "@kneegrade/contracts";
import { createLogger } from "@kneegrade/log";
import type { Job, Worker } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupConfig, testConfig, waitFor } from "../../../tests/helpers/env.ts";
import { createQueue, deliveryDelayMs, deliverySchedule, startJobWorker } from "./index.ts";

/** How late BullMQ may run a delayed job (its delayed set is polled, not timed to the ms). */
const SLACK_MS = 350;

describe("the delivery backoff in BullMQ", () => {
  let config: Awaited<ReturnType<typeof testConfig>>;
  const workers: Pick<Worker, "close">[] = [];

  beforeAll(async () => {
    config = await testConfig({
      DELIVERY_BACKOFF_SECONDS: "0.1",
      DELIVERY_BACKOFF_MAX_SECONDS: "0.4",
      // 0.1 + 0.2 + 0.4 × 4 = 1.9 s: seven attempts.
      DELIVERY_GIVE_UP_HOURS: String(1.9 / 3600),
      JOB_ATTEMPTS: "5",
      JOB_BACKOFF_SECONDS: "0.1",
    });
  });
  afterAll(async () => {
    for (const w of workers) await w.close();
    await cleanupConfig(config);
  });

  /** Runs one always-failing job on `queue` to its final failure: when each attempt started. */
  async function failToTheEnd(queue: (typeof QUEUES)[keyof typeof QUEUES]) {
    const starts: number[] = [];
    const finals: Job[] = [];
    const worker = startJobWorker({
      queue,
      config,
      concurrency: 1,
      process: async () => {
        starts.push(Date.now());
        throw new Error("PACS unreachable");
      },
      recordFinalFailure: async (job) => {
        finals.push(job);
      },
      log: createLogger("test", "silent"),
      events: { error: "test.error", recordRetry: "test.retry", unrecorded: "test.unrecorded" },
    });
    workers.push(worker);
    const q = createQueue(queue, config);
    const job = await q.add(queue, { n: 1 });
    const final = await waitFor(async () => finals[0], 30_000, "the final failure");
    await q.close();
    await worker.close();
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    return { job, final, starts, gaps };
  }

  it("retries a report delivery at the capped delays until its horizon, then fails for good", async () => {
    const schedule = deliverySchedule(config);
    expect(schedule.attempts).toBe(7);
    const { job, final, starts, gaps } = await failToTheEnd(QUEUES.reportStudy);
    expect(job.opts.attempts).toBe(7);
    expect(starts).toHaveLength(7);
    expect(final.attemptsMade).toBe(7);
    const expected = gaps.map((_, i) => deliveryDelayMs(i + 1, 100, 400));
    expect(expected).toEqual([100, 200, 400, 400, 400, 400]);
    for (const [i, gap] of gaps.entries()) {
      expect(gap).toBeGreaterThanOrEqual(expected[i]! - 5);
      expect(gap).toBeLessThan(expected[i]! + SLACK_MS);
    }
  }, 40_000);

  it("keeps a grading job's own doubling, past the delivery ceiling", async () => {
    const { job, starts, gaps } = await failToTheEnd(QUEUES.gradeStudy);
    expect(job.opts).toMatchObject({ attempts: 5, backoff: { type: "exponential", delay: 100 } });
    expect(starts).toHaveLength(5);
    for (const [i, gap] of gaps.entries()) {
      const expected = 100 * 2 ** i; // 100, 200, 400, 800: the last beyond the 400 ms ceiling
      expect(gap).toBeGreaterThanOrEqual(expected - 5);
      expect(gap).toBeLessThan(expected + SLACK_MS);
    }
  }, 40_000);
});
