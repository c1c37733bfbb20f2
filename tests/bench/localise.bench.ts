/**
 * Localiser benchmark: ms per radiograph of `localiseKnees` (packages/knee) against a baseline
 * localiser: by default the pure-JS one without a pyramid or onnxruntime ("JS localiser", git
 * revision 81ec5b6), or the one at any other revision (`--baseline-rev`: that revision's packages/knee,
 * extracted into var/bench-localise/ and run in the same process — in its own worker thread when
 * it had one, as the services ran it), on the same
 * 2,500 × 2,000 radiographs composed from real val crops, alternating run by run so both see the
 * same machine load. The new localiser runs as the services run it: in its worker thread
 * (`localiseKneesOffThread`). Wall time and process CPU time (all threads: the localiser's,
 * sharp's and onnxruntime's) are both reported; on a shared machine CPU time is the steadier
 * measure of one core's work. The caller's event loop's longest stall during each localisation is
 * reported for both.
 *
 *   npx tsx tests/bench/localise.bench.ts [--runs 5] [--baseline-rev 81ec5b6]
 *   taskset -c 0 npm run bench:localise     # one core: every thread of the process on CPU 0
 *
 * Before timing, it checks both find the same knees: the same count, centres within 3 % of the
 * square's side, sides within 5 %, scores within 0.03.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { composeRadiograph } from "@kneegrade/sample-radiographs";
import {
  closeLocaliserThread,
  type GreyImage,
  type LocaliseResult,
  localiseKneesOffThread,
} from "../../packages/knee/src/index.ts";
import { REPO_ROOT, SHARED_DATA } from "../helpers/paths.ts";

export const BASELINE_REV = "81ec5b6";
export const baselineName = (rev = BASELINE_REV) =>
  rev === BASELINE_REV ? `JS localiser (${rev})` : `the localiser at ${rev}`;

type Localise = (img: GreyImage, o: { spacingMm?: number | null }) => Promise<LocaliseResult>;

/**
 * The localiser at `rev`, from git: that revision's packages/knee/src and assets, extracted into
 * var/bench-localise/<rev>/ (package imports resolve to this repo's node_modules). Run as that
 * revision's services ran it: in its own worker thread where it had one (`localise-thread.ts`),
 * else on the caller's thread (the JS localiser).
 */
async function baselineLocaliser(
  rev: string,
): Promise<{ localise: Localise; close: () => Promise<void> }> {
  const dir = join(REPO_ROOT, "var", "bench-localise", rev);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const tar = execFileSync("git", [
    "-C",
    REPO_ROOT,
    "archive",
    rev,
    "packages/knee/src",
    "packages/knee/assets",
  ]);
  execFileSync("tar", ["-x", "-C", dir, "--strip-components=2"], { input: tar });
  const threaded = join(dir, "src", "localise-thread.ts");
  if (existsSync(threaded)) {
    const mod = await import(pathToFileURL(threaded).href);
    return { localise: mod.localiseKneesOffThread, close: mod.closeLocaliserThread };
  }
  const mod = await import(pathToFileURL(join(dir, "src", "localise.ts")).href);
  return { localise: mod.localiseKnees as Localise, close: async () => {} };
}

const VAL = `${SHARED_DATA}knee-kl/val/`;
const crop = (grade: number, i: number) =>
  `${VAL}${grade}/${readdirSync(`${VAL}${grade}`).sort()[i]}`;

/** 2,500 × 2,000 bilateral radiographs (375 × 300 mm at 0.15 mm), knees of varied grades. */
async function radiographs(count: number) {
  const out: (GreyImage & { spacingMm: number })[] = [];
  for (let k = 0; k < count; k++) {
    const r = await composeRadiograph({
      widthMm: 375,
      heightMm: 300,
      spacingMm: 0.15,
      seed: k + 1,
      knees: [
        { png: crop(k % 5, 7 + k), xMm: 100 + 3 * k, yMm: 140 + 4 * k, sideMm: 85 + 3 * k },
        { png: crop((k + 3) % 5, 9 + k), xMm: 272 - 2 * k, yMm: 143 + 4 * k, sideMm: 85 + 3 * k },
      ],
    });
    out.push({
      width: r.width,
      height: r.height,
      data: Uint8Array.from(r.stored, (v) => v >> 4),
      spacingMm: r.spacingMm,
    });
  }
  return out;
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function timed(f: () => Promise<LocaliseResult>) {
  const cpu = process.cpuUsage();
  const t = performance.now();
  const result = await f();
  const wall = performance.now() - t;
  const c = process.cpuUsage(cpu);
  return { result, wall, cpu: (c.user + c.system) / 1000 };
}

function sameKnees(a: LocaliseResult, b: LocaliseResult): string | null {
  if (a.knees.length !== b.knees.length) return `${a.knees.length} vs ${b.knees.length} knees`;
  for (const [i, k] of a.knees.entries()) {
    const o = b.knees[i]!;
    const off = Math.hypot(k.cx - o.cx, k.cy - o.cy) / o.side;
    if (off > 0.03) return `knee ${i}: centres ${(off * 100).toFixed(1)} % of a side apart`;
    if (Math.abs(k.side / o.side - 1) > 0.05) return `knee ${i}: sides ${k.side} vs ${o.side}`;
    if (Math.abs(k.score - o.score) > 0.03) return `knee ${i}: scores ${k.score} vs ${o.score}`;
  }
  return null;
}

export async function benchLocalise(opts: { runs?: number; baselineRev?: string } = {}) {
  const runs = opts.runs ?? 5;
  const baseline = await baselineLocaliser(opts.baselineRev ?? BASELINE_REV);
  const before = baseline.localise;
  const images = await radiographs(4);
  const rows = [];
  for (const spacingKnown of [true, false]) {
    const wall = { before: [] as number[], after: [] as number[] };
    const cpu = { before: [] as number[], after: [] as number[] };
    const stalls: number[] = [];
    const beforeStalls: number[] = [];
    let mismatch: string | null = null;
    for (let run = -1; run < runs; run++) {
      for (const img of images) {
        const o = { spacingMm: spacingKnown ? img.spacingMm : null };
        const beforeLoop = monitorEventLoopDelay({ resolution: 1 });
        beforeLoop.enable();
        const b = await timed(() => before(img, o));
        beforeLoop.disable();
        const loop = monitorEventLoopDelay({ resolution: 1 });
        loop.enable();
        const a = await timed(() => localiseKneesOffThread(img, o));
        loop.disable();
        if (run < 0) {
          mismatch ??= sameKnees(a.result, b.result);
          continue; // warm-up, and the equality check
        }
        wall.before.push(b.wall);
        wall.after.push(a.wall);
        cpu.before.push(b.cpu);
        cpu.after.push(a.cpu);
        stalls.push(loop.max / 1e6);
        beforeStalls.push(beforeLoop.max / 1e6);
      }
    }
    rows.push({
      spacing: spacingKnown ? "known (60–170 mm)" : "unknown (12–70 % of the side)",
      beforeWallMs: median(wall.before),
      afterWallMs: median(wall.after),
      beforeCpuMs: median(cpu.before),
      afterCpuMs: median(cpu.after),
      wallRatio: median(wall.after) / median(wall.before),
      cpuRatio: median(cpu.after) / median(cpu.before),
      maxEventLoopStallMs: Math.max(...stalls),
      beforeMaxEventLoopStallMs: Math.max(...beforeStalls),
      sameKnees: mismatch ?? "yes",
    });
  }
  await closeLocaliserThread();
  await baseline.close();
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { values } = parseArgs({
    options: { runs: { type: "string" }, "baseline-rev": { type: "string" } },
  });
  const rows = await benchLocalise({
    runs: values.runs ? Number(values.runs) : undefined,
    baselineRev: values["baseline-rev"],
  });
  console.log(
    `localisation of a 2,500 × 2,000 radiograph, median ms; baseline: ${baselineName(values["baseline-rev"])}`,
  );
  for (const r of rows) {
    console.log(
      `spacing ${r.spacing}: wall ${r.beforeWallMs.toFixed(0)} → ${r.afterWallMs.toFixed(0)} ms ` +
        `(×${r.wallRatio.toFixed(2)}), CPU ${r.beforeCpuMs.toFixed(0)} → ` +
        `${r.afterCpuMs.toFixed(0)} ms (×${r.cpuRatio.toFixed(2)}); longest event-loop stall ` +
        `${r.beforeMaxEventLoopStallMs.toFixed(0)} → ${r.maxEventLoopStallMs.toFixed(1)} ms; ` +
        `same knees: ${r.sameKnees}`,
    );
  }
}
