/** The micro-batcher around the real smoke-model ensemble. */

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BatcherClosedError, type BatchInfo, MicroBatcher } from "./batcher.ts";
import type { Ensemble } from "./runtime.ts";
import { openTestModel, syntheticCrops } from "./test-support.ts";
import type { KneePrediction } from "./types.ts";

let ensemble: Ensemble;

beforeAll(async () => {
  ensemble = await openTestModel("smoke", { maxBatch: 64 });
});
afterAll(async () => {
  await ensemble?.close();
});

/** Same knee, same answer: grade and probabilities (batch composition may move the last bits). */
function expectSame(got: KneePrediction[], want: KneePrediction[]) {
  expect(got.map((p) => p.grade)).toEqual(want.map((p) => p.grade));
  got.forEach((p, i) => {
    p.probabilities.forEach((v, c) => {
      expect(Math.abs(v - want[i]!.probabilities[c]!)).toBeLessThan(1e-6);
    });
    expect(p.heatmap.data.length).toBe(want[i]!.heatmap.data.length);
  });
}

function recorder() {
  const batches: BatchInfo[] = [];
  return { batches, onBatch: (b: BatchInfo) => batches.push(b) };
}

/** Submissions of 1, 3, 2, 4 and 2 crops: 12 distinct knees. */
function submissions(): Uint8Array[][] {
  const crops = syntheticCrops(12, 64, 64, 5);
  return [
    crops.slice(0, 1),
    crops.slice(1, 4),
    crops.slice(4, 6),
    crops.slice(6, 10),
    crops.slice(10),
  ];
}

describe("MicroBatcher", () => {
  it("gives every caller its own results, equal to a direct predict", async () => {
    const subs = submissions();
    const direct = await Promise.all(subs.map((s) => ensemble.predict(s)));
    const { batches, onBatch } = recorder();
    const batcher = new MicroBatcher(ensemble, { maxBatch: 4, maxWaitMs: 20, onBatch });
    const got = await Promise.all(subs.map((s) => batcher.submit(s)));
    got.forEach((g, i) => {
      expect(g).toHaveLength(subs[i]!.length);
      expectSame(g, direct[i]!);
    });
    // 12 crops arrived together: three full batches ([1+3], [2+2 of 4], [2 of 4+2]), the
    // submission of 4 split across two of them.
    expect(batches.map((b) => b.size)).toEqual([4, 4, 4]);
    expect(batches.every((b) => b.ok && !b.retry)).toBe(true);
    expect(batches.map((b) => b.submissions)).toEqual([2, 2, 2]);
    await batcher.close();
  });

  it("runs a full batch at once and a partial one after maxWaitMs", async () => {
    const { batches, onBatch } = recorder();
    const batcher = new MicroBatcher(ensemble, { maxBatch: 4, maxWaitMs: 150, onBatch });
    const crops = syntheticCrops(5, 64, 64, 9);
    const t0 = performance.now();
    const full = batcher.submit(crops.slice(0, 4)).then(() => performance.now() - t0);
    const partial = batcher.submit(crops.slice(4)).then(() => performance.now() - t0);
    expect(await full).toBeLessThan(140);
    expect(await partial).toBeGreaterThanOrEqual(145);
    expect(batches.map((b) => b.size)).toEqual([4, 1]);
    await batcher.close();
  });

  it("gathers callers arriving within maxWaitMs into one batch", async () => {
    const { batches, onBatch } = recorder();
    const batcher = new MicroBatcher(ensemble, { maxBatch: 16, maxWaitMs: 100, onBatch });
    const subs = submissions();
    const results: Promise<KneePrediction[]>[] = [];
    for (const s of subs) {
      results.push(batcher.submit(s));
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(results);
    expect(batches.map((b) => [b.size, b.submissions])).toEqual([[12, 5]]);
    await batcher.close();
  });

  it("rejects an invalid submission alone, before it reaches a batch", async () => {
    const { batches, onBatch } = recorder();
    const batcher = new MicroBatcher(ensemble, { maxBatch: 16, maxWaitMs: 20, onBatch });
    const subs = submissions();
    const direct = await Promise.all(subs.map((s) => ensemble.predict(s)));
    const bad = batcher.submit([new Uint8Array(100)]);
    const good = subs.map((s) => batcher.submit(s));
    await expect(bad).rejects.toMatchObject({ code: "BAD_INPUT" });
    for (const [i, g] of (await Promise.all(good)).entries()) expectSame(g, direct[i]!);
    expect(batches.map((b) => [b.size, b.ok])).toEqual([[12, true]]);
    await batcher.close();
  });

  it("when a batch fails, reruns each submission alone so only the culprit fails", async () => {
    const { batches, onBatch } = recorder();
    // No per-submission check: the bad crop reaches the batch and fails it.
    const batcher = new MicroBatcher(ensemble, {
      maxBatch: 16,
      maxWaitMs: 20,
      validate: () => {},
      onBatch,
    });
    const subs = submissions();
    const direct = await Promise.all(subs.map((s) => ensemble.predict(s)));
    const good = subs.map((s) => batcher.submit(s));
    const bad = batcher.submit([subs[0]![0]!, new Uint8Array(100)]);
    await expect(bad).rejects.toThrow(/crop 1: expected 4096 bytes/);
    for (const [i, g] of (await Promise.all(good)).entries()) expectSame(g, direct[i]!);
    expect(batches.map((b) => [b.size, b.ok, b.retry])).toEqual([
      [14, false, false],
      [1, true, true],
      [3, true, true],
      [2, true, true],
      [4, true, true],
      [2, true, true],
      [2, false, true],
    ]);
    await batcher.close();
  });

  it("fails every part of a split submission whose part fails, and nobody else", async () => {
    const batcher = new MicroBatcher(ensemble, { maxBatch: 2, maxWaitMs: 5, validate: () => {} });
    const crops = syntheticCrops(3, 64, 64, 2);
    const bad = batcher.submit([crops[0]!, crops[1]!, new Uint8Array(1), crops[2]!, crops[0]!]);
    const good = batcher.submit(crops);
    await expect(bad).rejects.toMatchObject({ code: "BAD_INPUT" });
    expectSame(await good, await ensemble.predict(crops));
    expect(batcher.pendingCrops).toBe(0);
    await batcher.close();
  });

  it("close() runs what is pending without waiting, then refuses new work", async () => {
    const { batches, onBatch } = recorder();
    const batcher = new MicroBatcher(ensemble, { maxBatch: 8, maxWaitMs: 60_000, onBatch });
    const crops = syntheticCrops(3, 64, 64, 4);
    const pending = batcher.submit(crops);
    const t0 = performance.now();
    await batcher.close();
    expect(performance.now() - t0).toBeLessThan(5_000);
    expectSame(await pending, await ensemble.predict(crops));
    expect(batches.map((b) => b.size)).toEqual([3]);
    await expect(batcher.submit(crops)).rejects.toBeInstanceOf(BatcherClosedError);
    await expect(batcher.submit([])).rejects.toBeInstanceOf(BatcherClosedError);
  });

  it("keeps one predict in flight by default, filling the next batch meanwhile", async () => {
    let inFlight = 0;
    let most = 0;
    const sizes: number[] = [];
    const slow = {
      predict: async (crops: readonly Uint8Array[]) => {
        inFlight++;
        most = Math.max(most, inFlight);
        sizes.push(crops.length);
        await new Promise((r) => setTimeout(r, 30));
        try {
          return await ensemble.predict(crops);
        } finally {
          inFlight--;
        }
      },
    };
    const batcher = new MicroBatcher(slow, { maxBatch: 4, maxWaitMs: 0 });
    const crops = syntheticCrops(9, 64, 64, 6);
    const first = batcher.submit(crops.slice(0, 1));
    const rest = crops.slice(1).map((c) => batcher.submit([c]));
    const all = await Promise.all([first, ...rest]);
    expect(all.flat()).toHaveLength(9);
    expect(most).toBe(1);
    expect(sizes).toEqual([1, 4, 4]);
    await batcher.close();
  });

  it("refuses bad options", () => {
    expect(() => new MicroBatcher(ensemble, { maxBatch: 0, maxWaitMs: 1 })).toThrow(/maxBatch/);
    expect(() => new MicroBatcher(ensemble, { maxBatch: 1, maxWaitMs: -1 })).toThrow(/maxWaitMs/);
  });
});
