/**
 * Inference benchmark: ms per knee of the PIM ensemble in onnxruntime-node (`Ensemble.predict`,
 * end to end: tensor building, every member's session run, softmax, heat maps) against the same
 * model in PyTorch (eval mode, the baseline "PyTorch CPU"), on the same crops with the same thread
 * count, measured in the same run.
 *
 *   npx tsx tests/bench/infer.bench.ts [--threads 2] [--repeats 7] [--batches 1,8]
 *                                      [--config models/configs/gpu.json]
 *   (or BENCH_THREADS / BENCH_REPEATS / BENCH_BATCHES / BENCH_CONFIG)
 *
 * The members are the config's real architectures at their real input size with random weights
 * (speed does not depend on training), built and exported by `models/bench_export.py`, which also
 * writes the crops and then times PyTorch on request (`--serve`): the two runtimes alternate, run by
 * run, so both see the same machine load. The medians are reported. Before timing anything, the Node
 * side checks it runs the same model on the same crops (every member's logits against PyTorch's).
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { Ensemble } from "@kneegrade/inference";
import { createLogger } from "@kneegrade/log";
import { REPO_ROOT } from "../helpers/paths.ts";

const BASELINE = "PyTorch CPU";
/** fixtures.json's tolerance: random-weight members at 224 px drift more than trained ones. */
const PARITY_ABS = 1e-3;

export interface BenchInferOptions {
  /** Training config whose members are measured (default models/configs/gpu.json). */
  config?: string;
  /** Threads for both runtimes (ORT intraOpNumThreads, torch.set_num_threads). Default 2. */
  threads?: number;
  /** Batch sizes (default [1, 8]). */
  batches?: number[];
  /** Timed runs per batch size and runtime, after one warm-up (default 7). */
  repeats?: number;
  python?: string;
}

export interface BenchInferRow {
  batch: number;
  /** Median wall ms per knee of Ensemble.predict. */
  ortMsPerKnee: number;
  /** Of which: the members' session runs. */
  ortSessionMsPerKnee: number;
  /** Median wall ms per knee of all members' forward passes in PyTorch. */
  torchMsPerKnee: number;
  /** ortMsPerKnee / torchMsPerKnee (below 1: onnxruntime-node is faster). */
  ratio: number;
}

interface TorchReport {
  crops_file: string;
  count: number;
  input_size: number;
  members: string[];
  threads: number;
  torch: string;
  logits: Record<string, number[][]>;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** models/bench_export.py --serve: builds and exports the members, then times PyTorch on request. */
class TorchSide {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  private stderr = "";

  constructor(python: string, args: string[]) {
    this.child = spawn(python, ["-m", "models.bench_export", ...args, "--serve"], {
      cwd: REPO_ROOT,
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stderr.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  async next(): Promise<Record<string, unknown>> {
    for (;;) {
      const { value, done } = await this.lines.next();
      if (done) {
        const code = await new Promise((r) =>
          this.child.exitCode === null ? this.child.once("exit", r) : r(this.child.exitCode),
        );
        throw new Error(`models.bench_export exited (${code}): ${this.stderr}`);
      }
      if (value.startsWith("{")) return JSON.parse(value) as Record<string, unknown>;
    }
  }

  /** Wall ms of one PyTorch pass of every member over the first `batch` crops. */
  async run(batch: number): Promise<number> {
    this.child.stdin.write(`${JSON.stringify({ batch })}\n`);
    return (await this.next()).ms as number;
  }

  close(): void {
    this.child.stdin.end();
    if (this.child.exitCode === null) this.child.kill();
  }
}

export async function benchInfer(opts: BenchInferOptions = {}): Promise<BenchInferRow[]> {
  const config = resolve(opts.config ?? join(REPO_ROOT, "models/configs/gpu.json"));
  const threads = opts.threads ?? 2;
  const batches = opts.batches ?? [1, 8];
  const repeats = opts.repeats ?? 7;
  const python = opts.python ?? process.env.KNEEGRADE_PYTHON ?? "/usr/bin/python3";
  const work = await mkdtemp(join(tmpdir(), "kneegrade-bench-infer-"));
  const torch = new TorchSide(python, [
    "--config",
    config,
    "--out",
    work,
    "--threads",
    String(threads),
    "--batches",
    ...batches.map(String),
  ]);
  try {
    const report = (await torch.next()) as unknown as TorchReport;
    const bytes = await readFile(report.crops_file);
    const pixels = report.input_size * report.input_size;
    const crops = Array.from({ length: report.count }, (_, i) =>
      bytes.subarray(i * pixels, (i + 1) * pixels),
    );

    const ensemble = await Ensemble.open({
      modelDir: dirname(report.crops_file),
      allowTestModel: true,
      providers: ["cpu"],
      intraOpThreads: threads,
      interOpThreads: 1,
      maxBatch: Math.max(...batches),
      logger: createLogger("bench-infer", "warn"),
    });
    try {
      if (ensemble.inputSize.height !== report.input_size) {
        throw new Error(`input size ${ensemble.inputSize.height} != ${report.input_size}`);
      }
      // Same model, same inputs: every member's logits against PyTorch's.
      const check = await ensemble.predict(crops);
      const diffs = new Map<string, number>();
      check.forEach((p, i) => {
        for (const m of p.members) {
          m.logits.forEach((v, c) => {
            const d = Math.abs(v - report.logits[m.name]![i]![c]!);
            diffs.set(m.name, Math.max(diffs.get(m.name) ?? 0, d));
          });
        }
      });
      const perMember = [...diffs].map(([n, d]) => `${n} ${d.toExponential(2)}`).join(", ");
      if (![...diffs.values()].every((d) => d <= PARITY_ABS)) {
        throw new Error(`onnxruntime-node and PyTorch disagree (max abs logit diff): ${perMember}`);
      }
      console.error(
        `parity (max abs logit diff over ${crops.length} crops): ${perMember}; ` +
          `PyTorch ${report.torch}, ${report.threads} threads`,
      );

      // Paired samples: ORT and PyTorch alternate (order flipped every repeat), so a change in the
      // machine's load hits both.
      const rows: BenchInferRow[] = [];
      for (const batch of batches) {
        const input = crops.slice(0, batch);
        await ensemble.predict(input); // warm-up
        await torch.run(batch);
        const ort: number[] = [];
        const session: number[] = [];
        const pt: number[] = [];
        const timeOrt = async () => {
          const t0 = performance.now();
          const { timings } = await ensemble.predictTimed(input);
          ort.push(performance.now() - t0);
          session.push(
            timings.batches.reduce((s, b) => s + b.members.reduce((t, m) => t + m.ms, 0), 0),
          );
        };
        for (let r = 0; r < repeats; r++) {
          if (r % 2 === 0) {
            await timeOrt();
            pt.push(await torch.run(batch));
          } else {
            pt.push(await torch.run(batch));
            await timeOrt();
          }
        }
        const ortMsPerKnee = median(ort) / batch;
        const torchMsPerKnee = median(pt) / batch;
        rows.push({
          batch,
          ortMsPerKnee,
          ortSessionMsPerKnee: median(session) / batch,
          torchMsPerKnee,
          ratio: ortMsPerKnee / torchMsPerKnee,
        });
      }
      return rows;
    } finally {
      await ensemble.close();
    }
  } finally {
    torch.close();
    await rm(work, { recursive: true, force: true });
  }
}

export function formatRows(rows: BenchInferRow[]): string {
  const head = `| batch | ORT-node ms/knee (sessions) | ${BASELINE} ms/knee | ratio ORT/${BASELINE} |`;
  const lines = rows.map(
    (r) =>
      `| ${r.batch} | ${r.ortMsPerKnee.toFixed(1)} (${r.ortSessionMsPerKnee.toFixed(1)}) | ` +
      `${r.torchMsPerKnee.toFixed(1)} | ${r.ratio.toFixed(2)} |`,
  );
  return [head, "| --- | --- | --- | --- |", ...lines].join("\n");
}

function option(flag: string, env: string | undefined): string | undefined {
  const argv = process.argv.slice(2);
  const at = argv.indexOf(flag);
  const raw = at >= 0 ? argv[at + 1] : env;
  return raw === undefined || raw === "" ? undefined : raw;
}

function positiveInts(flag: string, raw: string | undefined): number[] | undefined {
  if (raw === undefined) return undefined;
  const values = raw.split(",").map(Number);
  if (values.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`${flag} must be a positive integer (or a comma-separated list of them)`);
  }
  return values;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const threads = positiveInts("--threads", option("--threads", process.env.BENCH_THREADS))?.[0];
  const repeats = positiveInts("--repeats", option("--repeats", process.env.BENCH_REPEATS))?.[0];
  const batches = positiveInts("--batches", option("--batches", process.env.BENCH_BATCHES));
  const config = option("--config", process.env.BENCH_CONFIG);
  const rows = await benchInfer({
    ...(threads ? { threads } : {}),
    ...(repeats ? { repeats } : {}),
    ...(batches ? { batches } : {}),
    ...(config ? { config } : {}),
  });
  console.log(
    `Inference of ${config ?? "models/configs/gpu.json"}'s ensemble at its real input size, ` +
      `${threads ?? 2} threads (onnxruntime-node cpu vs ${BASELINE}, same crops):`,
  );
  console.log(formatRows(rows));
}
