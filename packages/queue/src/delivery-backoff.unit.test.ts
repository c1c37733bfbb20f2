/**
 * The delivery retry schedule: capped doubling, the attempts that span the give-up horizon, the
 * strategy as BullMQ calls it, grading jobs left on their own schedule, and the settings'
 * validation.
 */
import { readFileSync } from "node:fs";
import { ConfigError, loadConfig } from "@kneegrade/config";
import { QUEUES } from "@kneegrade/contracts";
import { Backoffs } from "bullmq";
import { describe, expect, it } from "vitest";
import {
  attemptsWithin,
  DELIVERY_BACKOFF,
  deliveryBackoffStrategy,
  deliveryDelayMs,
  deliverySchedule,
  deliverySpanMs,
} from "./delivery-backoff.ts";
import { retryOptions } from "./index.ts";

const S = 1000;
const H = 3600 * S;
/** Today's defaults before the ceiling: 12 attempts, 10 s doubling without a cap. */
const UNCAPPED_SPAN_MS = Array.from({ length: 11 }, (_, i) => 10 * S * 2 ** i).reduce(
  (a, b) => a + b,
);

describe("deliveryDelayMs", () => {
  it("doubles from the first delay up to the ceiling, and stays there", () => {
    const delays = Array.from({ length: 8 }, (_, i) => deliveryDelayMs(i + 1, 10 * S, 120 * S));
    expect(delays).toEqual([10, 20, 40, 80, 120, 120, 120, 120].map((s) => s * S));
    expect(deliveryDelayMs(5000, 10 * S, 120 * S)).toBe(120 * S);
  });

  it("never waits longer than the ceiling, even for the first retry", () => {
    expect(deliveryDelayMs(1, 300 * S, 60 * S)).toBe(60 * S);
  });

  it("refuses a retry number below 1", () => {
    expect(() => deliveryDelayMs(0, S, S)).toThrow(RangeError);
  });
});

describe("the dead-letter horizon", () => {
  it("keeps the defaults' horizon near the uncapped schedule's 5.7 hours", () => {
    const c = loadConfig({});
    const s = deliverySchedule(c);
    expect(UNCAPPED_SPAN_MS / H).toBeCloseTo(5.69, 2);
    expect(s).toMatchObject({ baseMs: 10 * S, maxMs: 120 * S, attemptsSet: false });
    expect(s.spanMs).toBeGreaterThanOrEqual(c.DELIVERY_GIVE_UP_HOURS * H);
    expect(s.spanMs).toBeLessThan(c.DELIVERY_GIVE_UP_HOURS * H + 120 * S);
    expect(s.spanMs).toBeGreaterThan(UNCAPPED_SPAN_MS);
    // The fewest attempts that reach it: one fewer falls short.
    expect(deliverySpanMs(s.attempts - 1, s.baseMs, s.maxMs)).toBeLessThan(6 * H);
  });

  it("gives the figures docs/CONFIGURATION.md quotes (generated from the variables)", () => {
    const docs = readFileSync(new URL("../../../docs/CONFIGURATION.md", import.meta.url), "utf8");
    const row = (name: string) => docs.split("\n").find((l) => l.startsWith(`| \`${name}\``));
    const attempts = deliverySchedule(loadConfig({})).attempts;
    expect(row("DELIVERY_GIVE_UP_HOURS")).toContain(`(${attempts} with the defaults)`);
    const twelve = deliverySpanMs(12, 10 * S, 120 * S);
    expect(twelve).toBe(990 * S);
    expect(row("DELIVERY_ATTEMPTS")).toContain(
      `12 attempts: ≈ ${Math.round(twelve / 60 / S)} minutes`,
    );
  });

  it("sums the delays between attempts, below and beyond the ceiling", () => {
    expect(deliverySpanMs(1, 10 * S, 120 * S)).toBe(0);
    expect(deliverySpanMs(4, 10 * S, 120 * S)).toBe(70 * S);
    expect(deliverySpanMs(7, 10 * S, 120 * S)).toBe((150 + 240) * S);
    const loop = (n: number) =>
      Array.from({ length: n - 1 }, (_, i) => deliveryDelayMs(i + 1, 300, 2000)).reduce(
        (a, b) => a + b,
        0,
      );
    for (const n of [1, 2, 3, 4, 5, 9, 40]) expect(deliverySpanMs(n, 300, 2000)).toBe(loop(n));
  });

  it("takes as many attempts as the horizon needs, and at least one", () => {
    expect(attemptsWithin(0, 10 * S, 120 * S)).toBe(1);
    expect(attemptsWithin(10 * S, 10 * S, 120 * S)).toBe(2);
    expect(attemptsWithin(11 * S, 10 * S, 120 * S)).toBe(3);
    for (const horizon of [S, 59 * S, H, 6 * H, 14 * 24 * H]) {
      const n = attemptsWithin(horizon, 10 * S, 120 * S);
      expect(deliverySpanMs(n, 10 * S, 120 * S)).toBeGreaterThanOrEqual(horizon);
      if (n > 1) expect(deliverySpanMs(n - 1, 10 * S, 120 * S)).toBeLessThan(horizon);
    }
    expect(() => attemptsWithin(H, 0, 120 * S)).toThrow(RangeError);
  });

  it("uses DELIVERY_ATTEMPTS when set, and says it was set", () => {
    const s = deliverySchedule(loadConfig({ DELIVERY_ATTEMPTS: "12" }));
    expect(s).toMatchObject({ attempts: 12, attemptsSet: true, spanMs: 990 * S });
  });
});

describe("the strategy as BullMQ calls it", () => {
  const job = (type: string, delay: number) =>
    ({ opts: { backoff: { type, delay } } }) as unknown as Parameters<typeof Backoffs.calculate>[3];

  it("computes each retry's delay from the job's first delay and the worker's ceiling", async () => {
    const strategy = deliveryBackoffStrategy(2000);
    const backoff = { type: DELIVERY_BACKOFF, delay: 300 };
    const delays = [];
    // BullMQ passes the attempts made so far, this failure included (1 for the first retry).
    for (let attemptsMade = 1; attemptsMade <= 6; attemptsMade++) {
      delays.push(
        await Backoffs.calculate(
          backoff,
          attemptsMade,
          new Error("x"),
          job(DELIVERY_BACKOFF, 300),
          strategy,
        ),
      );
    }
    expect(delays).toEqual([300, 600, 1200, 2000, 2000, 2000]);
  });

  it("leaves grading's exponential backoff uncapped, and refuses an unknown custom type", async () => {
    const strategy = deliveryBackoffStrategy(2000);
    const exponential = { type: "exponential", delay: 300 };
    expect(
      await Backoffs.calculate(exponential, 6, new Error("x"), job("exponential", 300), strategy),
    ).toBe(9600);
    expect(() => strategy(1, "something-else", new Error("x"), job("something-else", 300))).toThrow(
      /unknown backoff strategy/,
    );
  });
});

describe("retryOptions", () => {
  it("gives report deliveries the capped schedule and grading jobs their own", () => {
    const c = loadConfig({ JOB_ATTEMPTS: "3", JOB_BACKOFF_SECONDS: "7" });
    expect(retryOptions(QUEUES.gradeStudy, c)).toEqual({
      attempts: 3,
      backoff: { type: "exponential", delay: 7000 },
    });
    expect(retryOptions(QUEUES.reportStudy, c)).toEqual({
      attempts: deliverySchedule(c).attempts,
      backoff: { type: DELIVERY_BACKOFF, delay: 10_000 },
    });
    // Without the delivery settings (a caller with only the connection): the defaults.
    expect(retryOptions(QUEUES.reportStudy, { REDIS_URL: "", QUEUE_PREFIX: "x" })).toEqual(
      retryOptions(QUEUES.reportStudy, loadConfig({})),
    );
  });
});

describe("the delivery settings' validation", () => {
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (error) {
      if (error instanceof ConfigError) return error.message;
      throw error;
    }
    return "";
  };

  it("refuses a retry without a pause, a ceiling of 0, and horizons out of range", () => {
    expect(problems({ DELIVERY_BACKOFF_SECONDS: "0" })).toMatch(
      /DELIVERY_BACKOFF_SECONDS: .*(greater than|>) ?0/i,
    );
    expect(problems({ DELIVERY_BACKOFF_MAX_SECONDS: "0" })).toMatch(
      /DELIVERY_BACKOFF_MAX_SECONDS: .*(greater than|>) ?0/i,
    );
    expect(problems({ DELIVERY_BACKOFF_MAX_SECONDS: "7200" })).toContain(
      "DELIVERY_BACKOFF_MAX_SECONDS: must be at most 3600 seconds",
    );
    expect(problems({ DELIVERY_GIVE_UP_HOURS: "400" })).toContain(
      "DELIVERY_GIVE_UP_HOURS: must be at most 336 hours (14 days)",
    );
    expect(problems({ DELIVERY_GIVE_UP_HOURS: "soon" })).toMatch(/DELIVERY_GIVE_UP_HOURS: /);
    expect(problems({ DELIVERY_ATTEMPTS: "2.5" })).toContain(
      "DELIVERY_ATTEMPTS: must be a whole number",
    );
    expect(problems({ PACS_PROBE_SECONDS: "-1" })).toMatch(/PACS_PROBE_SECONDS: /);
    expect(problems({ PACS_PROBE_SECONDS: "4000" })).toContain(
      "PACS_PROBE_SECONDS: must be at most 3600 seconds",
    );
  });

  it("takes fractions, an empty DELIVERY_ATTEMPTS as unset, and 0 as no probe", () => {
    const c = loadConfig({
      DELIVERY_BACKOFF_SECONDS: "0.3",
      DELIVERY_BACKOFF_MAX_SECONDS: "1.5",
      DELIVERY_GIVE_UP_HOURS: "0.5",
      DELIVERY_ATTEMPTS: "",
      PACS_PROBE_SECONDS: "0",
    });
    expect(c).toMatchObject({
      DELIVERY_BACKOFF_SECONDS: 0.3,
      DELIVERY_BACKOFF_MAX_SECONDS: 1.5,
      DELIVERY_GIVE_UP_HOURS: 0.5,
      PACS_PROBE_SECONDS: 0,
    });
    expect(c.DELIVERY_ATTEMPTS).toBeUndefined();
    expect(loadConfig({}).PACS_PROBE_SECONDS).toBe(15);
  });
});
