/**
 * Micro-batching for GPU workers: many concurrent callers submit a few crops each; the batcher
 * gathers them into batches of up to `maxBatch` crops (or whatever is pending `maxWaitMs` after the
 * oldest pending crop arrived), runs one `predict` per batch, and hands every caller exactly its own
 * results, in order. One caller's bad input never fails another caller.
 */
import type { Crop } from "./runtime.ts";

export interface Predictor<R> {
  predict(crops: readonly Crop[]): Promise<R[]>;
  /** Optional per-submission check (throws on bad input); `Ensemble.validate` is one. */
  validate?(crops: readonly Crop[]): void;
}

export interface BatchInfo {
  /** Crops in this predict call. */
  size: number;
  /** Submissions (or parts of submissions) in it. */
  submissions: number;
  /** True for the one-submission-at-a-time reruns after a batch failed. */
  retry: boolean;
  /** Whether this predict call succeeded. */
  ok: boolean;
  ms: number;
}

export interface MicroBatcherOptions {
  /** Most crops per predict call (a larger submission is split across batches). */
  maxBatch: number;
  /** Longest a pending crop waits for a batch to fill, in ms. */
  maxWaitMs: number;
  /** Predict calls in flight at once (default 1: the next batch fills while one runs). */
  concurrency?: number;
  /** Per-submission check before batching; defaults to the predictor's `validate`, if any. */
  validate?: (crops: readonly Crop[]) => void;
  /** Called after every predict call the batcher makes (metrics, tests). */
  onBatch?: (info: BatchInfo) => void;
}

interface Submission<R> {
  crops: readonly Crop[];
  results: R[];
  /** Crops not yet handed to a batch. */
  next: number;
  /** Crops whose results have not arrived yet. */
  remaining: number;
  failed: boolean;
  at: number;
  resolve(results: R[]): void;
  reject(error: unknown): void;
}

interface Slice<R> {
  sub: Submission<R>;
  start: number;
  end: number;
}

export class BatcherClosedError extends Error {
  constructor() {
    super("the micro-batcher is closed");
    this.name = "BatcherClosedError";
  }
}

export class MicroBatcher<R> {
  private readonly queue: Submission<R>[] = [];
  private pending = 0;
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  private readonly maxBatch: number;
  private readonly maxWaitMs: number;
  private readonly concurrency: number;
  private readonly check: ((crops: readonly Crop[]) => void) | undefined;

  constructor(
    private readonly predictor: Predictor<R>,
    private readonly options: MicroBatcherOptions,
  ) {
    const { maxBatch, maxWaitMs, concurrency = 1 } = options;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) {
      throw new TypeError(`maxBatch must be a positive integer, got ${maxBatch}`);
    }
    if (!Number.isFinite(maxWaitMs) || maxWaitMs < 0) {
      throw new TypeError(`maxWaitMs must be a number >= 0, got ${maxWaitMs}`);
    }
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new TypeError(`concurrency must be a positive integer, got ${concurrency}`);
    }
    this.maxBatch = maxBatch;
    this.maxWaitMs = maxWaitMs;
    this.concurrency = concurrency;
    this.check = options.validate ?? predictor.validate?.bind(predictor);
  }

  /** Crops waiting for a batch. */
  get pendingCrops(): number {
    return this.pending;
  }

  /** The results for `crops`, in order. Rejects only if this submission is bad or its run fails. */
  submit(crops: readonly Crop[]): Promise<R[]> {
    if (this.closing) return Promise.reject(new BatcherClosedError());
    try {
      if (!Array.isArray(crops)) throw new TypeError("crops must be an array");
      this.check?.(crops);
    } catch (error) {
      return Promise.reject(error);
    }
    if (crops.length === 0) return Promise.resolve([]);
    return new Promise<R[]>((resolve, reject) => {
      this.queue.push({
        crops: [...crops],
        results: new Array<R>(crops.length),
        next: 0,
        remaining: crops.length,
        failed: false,
        at: performance.now(),
        resolve,
        reject,
      });
      this.pending += crops.length;
      this.pump();
    });
  }

  /** Runs everything pending now (without waiting for maxWaitMs), then resolves when idle. */
  async close(): Promise<void> {
    this.closing = true;
    this.pump();
    if (this.running === 0 && this.pending === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.running < this.concurrency && this.pending > 0) {
      const oldest = this.queue[0]!;
      const waited = performance.now() - oldest.at;
      if (this.closing || this.pending >= this.maxBatch || waited >= this.maxWaitMs) {
        this.clearTimer();
        this.dispatch();
        continue;
      }
      if (!this.timer) {
        this.timer = setTimeout(
          () => {
            this.timer = undefined;
            this.pump();
          },
          Math.max(0, this.maxWaitMs - waited),
        );
      }
      return;
    }
    if (this.pending === 0) this.clearTimer();
    if (this.running === 0 && this.pending === 0) {
      for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Takes up to maxBatch crops from the front of the queue and runs them. */
  private dispatch(): void {
    const slices: Slice<R>[] = [];
    let size = 0;
    while (size < this.maxBatch && this.queue.length > 0) {
      const sub = this.queue[0]!;
      const take = Math.min(sub.crops.length - sub.next, this.maxBatch - size);
      slices.push({ sub, start: sub.next, end: sub.next + take });
      sub.next += take;
      size += take;
      this.pending -= take;
      if (sub.next === sub.crops.length) this.queue.shift();
    }
    this.running++;
    void this.runBatch(slices).finally(() => {
      this.running--;
      this.pump();
    });
  }

  private async runBatch(slices: Slice<R>[]): Promise<void> {
    const live = slices.filter((s) => !s.sub.failed);
    if (live.length === 0) return;
    try {
      const results = await this.call(live, false);
      let at = 0;
      for (const s of live) {
        this.deliver(s, results.slice(at, at + (s.end - s.start)));
        at += s.end - s.start;
      }
      return;
    } catch (error) {
      if (live.length === 1) {
        this.fail(live[0]!.sub, error);
        return;
      }
    }
    // The batch failed: rerun each submission's part alone so only the culprit fails.
    for (const s of live) {
      if (s.sub.failed) continue;
      try {
        this.deliver(s, await this.call([s], true));
      } catch (error) {
        this.fail(s.sub, error);
      }
    }
  }

  private async call(slices: Slice<R>[], retry: boolean): Promise<R[]> {
    const crops = slices.flatMap((s) => s.sub.crops.slice(s.start, s.end));
    const start = performance.now();
    let ok = false;
    try {
      const results = await this.predictor.predict(crops);
      if (!Array.isArray(results) || results.length !== crops.length) {
        throw new Error(
          `predict returned ${Array.isArray(results) ? results.length : "no"} results for ` +
            `${crops.length} crops`,
        );
      }
      ok = true;
      return results;
    } finally {
      const info = { size: crops.length, submissions: slices.length, retry, ok };
      try {
        this.options.onBatch?.({ ...info, ms: performance.now() - start });
      } catch {
        // A metrics callback must not change anyone's result.
      }
    }
  }

  private deliver(s: Slice<R>, results: R[]): void {
    const sub = s.sub;
    if (sub.failed) return;
    for (let i = 0; i < results.length; i++) sub.results[s.start + i] = results[i]!;
    sub.remaining -= results.length;
    if (sub.remaining === 0) sub.resolve(sub.results);
  }

  private fail(sub: Submission<R>, error: unknown): void {
    if (sub.failed) return;
    sub.failed = true;
    // Parts of it still queued are dropped.
    if (sub.next < sub.crops.length) {
      this.pending -= sub.crops.length - sub.next;
      sub.next = sub.crops.length;
      const i = this.queue.indexOf(sub);
      if (i >= 0) this.queue.splice(i, 1);
    }
    sub.reject(error);
  }
}
