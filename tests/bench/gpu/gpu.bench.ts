/**
 * GPU benchmark of the ensemble: knees per second on each execution provider (default `webgpu`
 * and `cpu`) on the same machine and the same crops, p50/p95 latency per model run, the ratio to
 * the CPU provider, and the largest absolute difference of the probabilities between providers.
 *
 * Runs from source here (`npx tsx tests/bench/gpu/gpu.bench.ts --model-dir DIR`) and, bundled by
 * tests/bench/gpu/pack.sh into one .mjs, with a carried `node` on the GPU machine (run.sh).
 *
 *   --model-dir DIR      manifest.json + members (a test or benchmark model needs --allow-test-model)
 *   --providers LIST     default webgpu,cpu (the last one is the baseline)
 *   --batches LIST       batch sizes, default 1,8,32,64
 *   --seconds N          time per provider and batch size, default 5
 *   --threads N          CPU provider threads (default: onnxruntime's choice)
 *   --jobs N             concurrent jobs (2 knees each) for the micro-batcher comparison, default 16
 *   --out FILE           also write the results as JSON
 *
 * It also measures what the worker's micro-batcher buys on each provider: N concurrent jobs of two
 * knees each, run for the same time once straight into the ensemble (one model run per job) and
 * once through a MicroBatcher (maxBatch = the largest batch size, maxWait 10 ms).
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Ensemble, type KneePrediction, MicroBatcher } from "@kneegrade/inference";
import { createLogger } from "@kneegrade/log";

interface BatcherRow {
  provider: string;
  jobs: number;
  direct: number;
  batched: number;
  ratio: number;
}

/** Knees per second of `jobs` concurrent callers submitting two knees at a time, for `seconds`. */
async function concurrentKneesPerSecond(
  submit: (crops: Uint8Array[]) => Promise<unknown>,
  inputs: Uint8Array[],
  jobs: number,
  seconds: number,
): Promise<number> {
  let knees = 0;
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: jobs }, async (_, j) => {
      while (performance.now() < end) {
        const pair = [inputs[(2 * j) % inputs.length]!, inputs[(2 * j + 1) % inputs.length]!];
        await submit(pair);
        knees += 2;
      }
    }),
  );
  return (knees * 1000) / (performance.now() - start);
}

interface Row {
  provider: string;
  batch: number;
  runs: number;
  kneesPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  ratioToBaseline: number | null;
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

/** Deterministic grey crops with some structure (no patient data). */
function crops(n: number, size: number): Uint8Array[] {
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  return Array.from({ length: n }, () => {
    const c = new Uint8Array(size * size);
    const phase = rand() * Math.PI;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const band = Math.abs(y - size / 2) < size / 20 ? 60 : 160;
        c[y * size + x] = Math.max(
          0,
          Math.min(255, band + 40 * Math.sin(x / 9 + phase) + 20 * rand()),
        );
      }
    }
    return c;
  });
}

export async function benchGpu(o: {
  modelDir: string;
  providers: string[];
  batches: number[];
  seconds: number;
  threads?: number;
  allowTestModel?: boolean;
  jobs?: number;
}) {
  const batcherRows: BatcherRow[] = [];
  const log = createLogger("bench", "warn");
  const rows: Row[] = [];
  const unavailable: Record<string, string> = {};
  const predictions: Record<string, KneePrediction[]> = {};
  const largest = Math.max(...o.batches);
  for (const provider of o.providers) {
    let ensemble: Ensemble;
    try {
      ensemble = await Ensemble.open({
        modelDir: o.modelDir,
        providers: [provider],
        maxBatch: largest,
        allowTestModel: o.allowTestModel ?? false,
        ...(o.threads ? { intraOpThreads: o.threads } : {}),
        logger: log,
      });
    } catch (error) {
      unavailable[provider] = (error as Error).message.split("\n")[0] ?? "unavailable";
      continue;
    }
    const inputs = crops(largest, ensemble.inputSize.width);
    predictions[provider] = await ensemble.predict(inputs); // also the warm-up of the largest batch
    for (const batch of o.batches) {
      const slice = inputs.slice(0, batch);
      await ensemble.predict(slice); // warm-up at this shape
      const times: number[] = [];
      const end = performance.now() + o.seconds * 1000;
      while (performance.now() < end || times.length < 3) {
        const t = performance.now();
        await ensemble.predict(slice);
        times.push(performance.now() - t);
      }
      times.sort((a, b) => a - b);
      const total = times.reduce((a, b) => a + b, 0);
      rows.push({
        provider,
        batch,
        runs: times.length,
        kneesPerSecond: (batch * times.length * 1000) / total,
        p50Ms: quantile(times, 0.5),
        p95Ms: quantile(times, 0.95),
        ratioToBaseline: null,
      });
    }
    // What the micro-batcher buys: the same concurrent jobs, direct vs batched.
    const jobs = o.jobs ?? 16;
    const direct = await concurrentKneesPerSecond(
      (c) => ensemble.predict(c),
      inputs,
      jobs,
      o.seconds,
    );
    const batcher = new MicroBatcher(ensemble, { maxBatch: largest, maxWaitMs: 10 });
    const batched = await concurrentKneesPerSecond(
      (c) => batcher.submit(c),
      inputs,
      jobs,
      o.seconds,
    );
    await batcher.close();
    batcherRows.push({ provider, jobs, direct, batched, ratio: batched / direct });
    await ensemble.close();
  }
  const baseline = o.providers.at(-1)!;
  for (const r of rows) {
    const base = rows.find((b) => b.provider === baseline && b.batch === r.batch);
    r.ratioToBaseline = base ? r.kneesPerSecond / base.kneesPerSecond : null;
  }
  const diffs: Record<string, number> = {};
  const reference = predictions[baseline];
  for (const [provider, preds] of Object.entries(predictions)) {
    if (provider === baseline || !reference) continue;
    let max = 0;
    for (const [i, p] of preds.entries()) {
      for (const [g, v] of p.probabilities.entries()) {
        max = Math.max(max, Math.abs(v - reference[i]!.probabilities[g]!));
      }
    }
    diffs[provider] = max;
  }
  return { baseline, rows, batcher: batcherRows, unavailable, maxAbsProbabilityDiff: diffs };
}

export function formatGpu(r: Awaited<ReturnType<typeof benchGpu>>): string {
  const lines = [
    `| provider | batch | knees/s | p50 ms/run | p95 ms/run | ratio to ${r.baseline} |`,
    "| --- | --- | --- | --- | --- | --- |",
    ...r.rows.map(
      (x) =>
        `| ${x.provider} | ${x.batch} | ${x.kneesPerSecond.toFixed(1)} | ${x.p50Ms.toFixed(1)} | ${x.p95Ms.toFixed(1)} | ${x.ratioToBaseline?.toFixed(2) ?? "-"} |`,
    ),
  ];
  if (r.batcher.length) {
    lines.push(
      "",
      "| provider | concurrent jobs (2 knees) | knees/s direct | knees/s micro-batched | ratio |",
      "| --- | --- | --- | --- | --- |",
      ...r.batcher.map(
        (b) =>
          `| ${b.provider} | ${b.jobs} | ${b.direct.toFixed(1)} | ${b.batched.toFixed(1)} | ${b.ratio.toFixed(2)} |`,
      ),
    );
  }
  for (const [p, d] of Object.entries(r.maxAbsProbabilityDiff)) {
    lines.push(`max |p(${p}) - p(${r.baseline})| over the largest batch: ${d.toExponential(2)}`);
  }
  for (const [p, why] of Object.entries(r.unavailable)) lines.push(`${p}: unavailable (${why})`);
  return lines.join("\n");
}

const isMain = process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop()!);
if (isMain) {
  const { values } = parseArgs({
    options: {
      "model-dir": { type: "string" },
      providers: { type: "string", default: "webgpu,cpu" },
      batches: { type: "string", default: "1,8,32,64" },
      seconds: { type: "string", default: "5" },
      threads: { type: "string" },
      out: { type: "string" },
      jobs: { type: "string", default: "16" },
      "allow-test-model": { type: "boolean", default: false },
    },
  });
  if (!values["model-dir"]) {
    console.error(
      "usage: gpu.bench --model-dir DIR [--providers webgpu,cpu] [--batches 1,8,32,64]",
    );
    process.exit(2);
  }
  const result = await benchGpu({
    modelDir: values["model-dir"],
    providers: values.providers.split(","),
    batches: values.batches.split(",").map(Number),
    seconds: Number(values.seconds),
    ...(values.threads ? { threads: Number(values.threads) } : {}),
    allowTestModel: values["allow-test-model"],
    jobs: Number(values.jobs),
  });
  console.log(formatGpu(result));
  if (values.out) writeFileSync(values.out, `${JSON.stringify(result, null, 2)}\n`);
  // Native providers can keep handles open; the measurements are done.
  process.exit(0);
}
