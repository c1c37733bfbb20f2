/**
 * Decode benchmark: @kneegrade/pixels' readRadiograph against the DCMTK/GDCM command-line decoder
 * for each WG04 file's transfer syntax (dcmdjpeg, dcmdjpls, dcmdrle, gdcmconv --raw; dcmconv +te
 * for the uncompressed reference).
 *
 *   npx tsx tests/bench/decode.bench.ts [--runs N]     (or BENCH_RUNS; default 7)
 *
 * Ours: median wall time of readRadiograph on the file's bytes already in memory (parse, decode in
 * the codec worker, modality/VOI LUTs and display grey), after two warm-up calls; like grading, it
 * does not read `stored` (a compressed frame's 32-bit copy, made on first read). Baseline: median
 * wall time of the tool's process, from spawn to exit, decoding the file into a temp file, after
 * one warm-up run. Ratio = ours / theirs (below 1: we are faster).
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import {
  closeCodecs,
  describeTransferSyntax,
  readRadiograph,
} from "../../packages/pixels/src/index.ts";
import { REFERENCE_DECODERS } from "../helpers/dcmtk.ts";
import { WG04_DIR, WG04_FILES } from "../helpers/paths.ts";

const run = promisify(execFile);

export const BASELINE_NAME = "DCMTK/GDCM CLI";

/** The command-line decoder for each transfer syntax in WG04. */
const BASELINE_TOOL: Readonly<Record<string, readonly [string, readonly string[]]>> = {
  // Uncompressed: the same rewrite to explicit VR little endian the decoders end with.
  "1.2.840.10008.1.2.1": ["dcmconv", ["+te"]],
  ...REFERENCE_DECODERS,
};

export interface DecodeBenchRow {
  file: string;
  syntax: string;
  oursMs: number;
  baselineTool: string;
  baselineMs: number;
  ratio: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export async function benchDecode(opts: { runs?: number } = {}): Promise<DecodeBenchRow[]> {
  const runs = Math.max(1, opts.runs ?? 7);
  const dir = mkdtempSync(join(tmpdir(), "kneegrade-decode-bench-"));
  const rows: DecodeBenchRow[] = [];
  try {
    for (const file of Object.keys(WG04_FILES)) {
      const path = `${WG04_DIR}${file}`;
      const bytes = new Uint8Array(readFileSync(path));
      const first = await readRadiograph(bytes);
      const syntax = first.transferSyntaxUid;
      const tool = BASELINE_TOOL[syntax];
      if (!tool) throw new Error(`no baseline decoder for ${describeTransferSyntax(syntax)}`);
      const [cmd, args] = tool;
      const out = join(dir, `${file}.out.dcm`);
      const theirs = () => run(cmd, [...args, path, out], { timeout: 120_000 });
      await readRadiograph(bytes); // second warm-up
      await theirs(); // warm-up (page cache, shared libraries)
      const ours: number[] = [];
      const baseline: number[] = [];
      for (let i = 0; i < runs; i++) {
        ours.push(await timeMs(() => readRadiograph(bytes)));
        baseline.push(await timeMs(theirs));
      }
      const oursMs = median(ours);
      const baselineMs = median(baseline);
      rows.push({
        file,
        syntax,
        oursMs,
        baselineTool: [cmd, ...args].join(" "),
        baselineMs,
        ratio: oursMs / baselineMs,
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

export function formatTable(rows: DecodeBenchRow[]): string {
  const header = ["file", "transfer syntax", "ours ms", `${BASELINE_NAME}`, "baseline ms", "ratio"];
  const body = rows.map((r) => [
    r.file,
    r.syntax,
    r.oursMs.toFixed(1),
    r.baselineTool,
    r.baselineMs.toFixed(1),
    r.ratio.toFixed(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 2 || i >= 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" | ")} |`;
  return [
    line(header),
    `|${widths.map((w, i) => (i === 2 || i >= 4 ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`,
    ...body.map(line),
  ].join("\n");
}

function runsOption(): number | undefined {
  const argv = process.argv.slice(2);
  const at = argv.indexOf("--runs");
  const raw = at >= 0 ? argv[at + 1] : process.env.BENCH_RUNS;
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error("--runs must be a positive integer");
  return n;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const runs = runsOption();
  const rows = await benchDecode({ runs });
  await closeCodecs();
  console.log(
    `Decode of frame 0, median of ${runs ?? 7} runs (ours: readRadiograph from memory, ` +
      `to display grey; ${BASELINE_NAME}: process wall time, decoding to a temp file)\n`,
  );
  console.log(formatTable(rows));
}
