/**
 * Ingest benchmark: the kneegrade listener (in-process, on the real PostgreSQL and Redis, exactly
 * as the tests start it) against DCMTK storescp, both fed the same uncompressed radiographs by
 * DCMTK storescu over one association.
 *
 *   npm run bench:ingest -- [--count N] [--rounds R] [--warmup W]
 *                                           (or BENCH_COUNT / BENCH_ROUNDS / BENCH_WARMUP)
 *
 * BENCH_CPU_PROFILE=<dir> also writes a V8 CPU profile of each measured kneegrade run there
 * (`<dir>/kneegrade-<round>.cpuprofile`: the listener's main thread during that run only).
 *
 * Each round sends the N files once to every target, the order alternating between rounds; the
 * median wall time per target is reported. Every run is checked (N rows in the database and N
 * spooled files for kneegrade, N files for storescp), and the benchmark exits 1 if one is not.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PerformanceObserver, constants as perfConstants, performance } from "node:perf_hooks";
import globalSetup from "../global-setup.ts";
import { tool } from "../helpers/dcmtk.ts";
import { type Harness, resetDb, startHarness } from "../helpers/env.ts";
import { buildStudy } from "../helpers/studies.ts";
import { INCOMING_SPOOL_DIR, listFilesRecursive, procCpuMs, startStorescp } from "./storescp.ts";

const TARGET_RATIO = 0.8;
const SOURCE = "RG3_UNC.dcm";

function intOption(flag: string, env: string | undefined, fallback: number): number {
  const argv = process.argv.slice(2);
  const at = argv.indexOf(flag);
  const raw = at >= 0 ? argv[at + 1] : env;
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer`);
  return n;
}

interface Target {
  name: string;
  port: number;
  calledAet: string;
  /** Empties the target's storage (and database) before a run. */
  reset(): Promise<void>;
  /** Throws unless exactly `n` instances were kept by the last run. */
  verify(n: number): Promise<void>;
  /** CPU time (ms) the receiving process has used so far. */
  cpuMs(): number;
  /** Extra per-run measurement around a run (kneegrade: in-process RSS). */
  around?<T>(run: () => Promise<T>): Promise<T>;
}

interface RunResult {
  seconds: number;
  cpuMs: number;
}

const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: "scavenge",
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: "mark-compact",
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental marking",
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: "weak callbacks",
};

/**
 * CPU ms so far of this process's main thread and of its other threads grouped by the thread's
 * name without its number (V8's GC and compiler helpers, libuv's pool: file writes and fsync),
 * from Linux /proc.
 */
function threadCpu(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync("/proc/self/task")) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
    } catch {
      continue; // the thread ended meanwhile
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const name = tid === String(process.pid) ? "main" : comm.replace(/[-_ ]?\d+$/, "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
    out.set(name, (out.get(name) ?? 0) + ms);
  }
  return out;
}

/**
 * A command started now that runs only once released: a shell that waits for a line on its stdin,
 * then execs the command. `ready` resolves once the shell runs (so its start is behind us).
 */
function heldStart(cmd: string, args: string[], timeoutMs: number) {
  const child = spawn("sh", ["-c", 'echo ready; read go; exec "$@"', "sh", cmd, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    timeout: timeoutMs,
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr })),
  );
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (stdout.startsWith("ready\n")) resolve();
    });
    child.on("error", reject);
    void exited.then(() => reject(new Error(`${cmd} ended before it was released: ${stderr}`)));
  });
  return {
    ready,
    release: () => {
      child.stdin.end("go\n");
      return exited;
    },
  };
}

/** This process's peak RSS since the last reset (/proc/self/clear_refs), in bytes. */
function peakRssBytes(): number {
  const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
  return Number(kb ?? 0) * 1024;
}

/** V8 CPU profiles of this process written to `dir`, one per start/stop; none without `dir`. */
async function cpuProfiler(dir: string | undefined) {
  if (!dir) return undefined;
  await mkdir(dir, { recursive: true });
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 250 });
  return {
    start: () => session.post("Profiler.start"),
    async stop(name: string) {
      const { profile } = await session.post("Profiler.stop");
      await writeFile(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    },
    close: async () => session.disconnect(),
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const fmt = (x: number, digits = 2) => x.toFixed(digits);
const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);

async function main(): Promise<number> {
  const count = intOption("--count", process.env.BENCH_COUNT, 20);
  const rounds = intOption("--rounds", process.env.BENCH_ROUNDS, 3);
  const warmups = intOption("--warmup", process.env.BENCH_WARMUP, 3);
  const work = await mkdtemp(join(tmpdir(), "kneegrade-bench-"));
  let harness: Harness | undefined;
  const stops: Array<() => Promise<void>> = [];
  try {
    // --- data: N copies of the WG04 uncompressed CR with new UIDs, BodyPartExamined=KNEE ---
    const study = await buildStudy({
      dir: join(work, "in"),
      sources: Array.from({ length: count }, () => SOURCE),
      bodyPart: "KNEE",
    });
    const files = study.instances.map((i) => i.path);
    let bytes = 0;
    for (const f of files) bytes += (await stat(f)).size;
    const mb = bytes / 1e6;

    // --- targets ---
    await globalSetup();
    // A study that never becomes stable during the benchmark: the assembler stays out of it.
    harness = await startHarness({ STUDY_STABLE_SECONDS: "3600" });
    const h = harness;
    const spoolDir = h.config.SPOOL_DIR;
    let rssPeakDelta = 0;
    /** The listener process's CPU, main thread and the others, summed over the runs. */
    const threadCpuMs = new Map<string, number>();
    const kneegrade: Target = {
      name: "kneegrade listener (in-process)",
      port: h.listener.port,
      calledAet: h.config.LISTENER_AET,
      async reset() {
        await resetDb(h.db);
        for (const entry of await readdir(spoolDir)) {
          if (entry !== INCOMING_SPOOL_DIR)
            await rm(join(spoolDir, entry), { recursive: true, force: true });
        }
      },
      async verify(n) {
        // Only this benchmark's study: the test database may be shared with a concurrent test run.
        const rows = await h.db.instance.count({
          where: { routing: "KNEE", study: { studyInstanceUid: study.studyInstanceUid } },
        });
        const spooled = (await listFilesRecursive(spoolDir)).filter(
          (f) => !f.includes(`/${INCOMING_SPOOL_DIR}/`) && f.endsWith(".dcm"),
        );
        if (rows !== n || spooled.length !== n)
          throw new Error(`kneegrade kept ${rows} rows / ${spooled.length} files, expected ${n}`);
      },
      cpuMs() {
        const u = process.cpuUsage();
        return (u.user + u.system) / 1000;
      },
      async around(run) {
        const threads0 = threadCpu();
        const base = process.memoryUsage.rss();
        // The kernel's high-water mark of this process's RSS, reset to the current RSS: the peak
        // during the run without sampling it (sampling costs CPU charged to the listener).
        writeFileSync("/proc/self/clear_refs", "5");
        try {
          return await run();
        } finally {
          rssPeakDelta = Math.max(rssPeakDelta, peakRssBytes() - base);
          for (const [kind, ms] of threadCpu()) {
            threadCpuMs.set(kind, (threadCpuMs.get(kind) ?? 0) + ms - (threads0.get(kind) ?? 0));
          }
        }
      },
    };

    const version = /v(\d+\.\d+\.\d+)/.exec((await tool("storescp", ["--version"])).stdout)?.[1];
    const baselineName = `DCMTK storescp ${version ?? "?"}`;
    const plain = await startStorescp(join(work, "storescp"), []);
    stops.push(plain.stop);
    // storescp has no fsync option; the closest is to run `sync FILE DIR` (coreutils: fsync of
    // the file and of its directory) synchronously after each file, before the response is sent.
    const synced = await startStorescp(join(work, "storescp-sync"), [
      "--exec-on-reception",
      "sync #p/#f #p",
      "--exec-sync",
    ]);
    stops.push(synced.stop);
    const scpTarget = (name: string, s: typeof plain): Target => ({
      name,
      port: s.port,
      calledAet: s.aet,
      reset: async () => {
        await rm(s.dir, { recursive: true, force: true });
        await s.mkdir();
      },
      async verify(n) {
        const kept = await listFilesRecursive(s.dir);
        if (kept.length !== n) throw new Error(`${name} kept ${kept.length} files, expected ${n}`);
      },
      cpuMs: () => procCpuMs(s.pid),
    });
    const baseline = scpTarget(baselineName, plain);
    const baselineSync = scpTarget(`${baselineName} + exec sync`, synced);
    const targets = [kneegrade, baseline, baselineSync];

    // --- runs ---
    const send = async (t: Target, list: string[]): Promise<RunResult> => {
      await t.reset();
      // Start every run with no dirty pages left by the previous one (an fsync may flush them).
      await tool("sync", []);
      // storescu is started before the measured window and waits there for a line on its stdin:
      // starting a process from this one (fork of a large heap) costs about 16 ms of this
      // process's CPU, which would otherwise be counted as the listener's.
      const args = ["-aec", t.calledAet, "-aet", "MODALITY", "127.0.0.1", String(t.port)];
      const sender = heldStart("storescu", [...args, ...list], 600_000);
      await sender.ready;
      const cpu0 = t.cpuMs();
      const go = async () => {
        const t0 = performance.now();
        const r = await sender.release();
        const seconds = (performance.now() - t0) / 1000;
        if (r.code !== 0) throw new Error(`storescu → ${t.name} exited ${r.code}: ${r.stderr}`);
        return seconds;
      };
      const seconds = t.around ? await t.around(go) : await go();
      const cpuMs = t.cpuMs() - cpu0;
      await t.verify(list.length);
      return { seconds, cpuMs };
    };

    // Warm-up (not counted): connection pool, page cache of the input files, and most of the
    // work of V8's compilers, which go on optimising code run a few times per instance (the
    // C-STORE command and response, the database driver) for over a hundred instances — about
    // 6 ms of CPU per instance on their threads in the first run after one run of warm-up — a cost
    // that a listener running for days does not pay. Every target gets the same warm-up runs.
    for (let w = 0; w < warmups; w++) for (const t of targets) await send(t, files);
    rssPeakDelta = 0;

    const results = new Map<Target, RunResult[]>(targets.map((t) => [t, []]));
    threadCpuMs.clear();
    /** Garbage collections of the process, and the time windows of kneegrade's runs. */
    const gcEntries: { start: number; ms: number; kind: string }[] = [];
    const kneegradeWindows: [number, number][] = [];
    const gcObserver = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const code = (entry as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0;
        gcEntries.push({
          start: entry.startTime,
          ms: entry.duration,
          kind: GC_KINDS[code] ?? `kind ${code}`,
        });
      }
    });
    gcObserver.observe({ entryTypes: ["gc"] });
    const profiler = await cpuProfiler(process.env.BENCH_CPU_PROFILE);
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        if (t === kneegrade) await profiler?.start();
        const t0 = performance.now();
        results.get(t)!.push(await send(t, files));
        if (t === kneegrade) kneegradeWindows.push([t0, performance.now()]);
        if (t === kneegrade) await profiler?.stop(`kneegrade-${r + 1}`);
      }
    }
    await profiler?.close();
    for (const t of targets) await t.reset();

    // --- report ---
    const secondsOf = (t: Target) => results.get(t)!.map((x) => x.seconds);
    const med = (t: Target) => median(secondsOf(t));
    console.log(
      `\ningest benchmark: ${count} × ${SOURCE} (${fmt(bytes / count / 1e6)} MB each, ` +
        `${fmt(mb, 1)} MB total, uncompressed), storescu, one association per run, ` +
        `${rounds} round(s) after ${warmups} warm-up run(s), median wall time`,
    );
    console.log(
      `baseline: ${baselineName} -- stores uncompressed as received, no fsync option ` +
        "(second row: + `--exec-on-reception 'sync #p/#f #p' --exec-sync`, i.e. fsync of file+dir)\n",
    );
    const cpuPerInst = (t: Target) => median(results.get(t)!.map((x) => x.cpuMs)) / count;
    const rows = targets.map((t) => {
      const runs = secondsOf(t);
      const m = med(t);
      return [
        t.name,
        fmt(m, 3),
        fmt(count / m, 1),
        fmt(mb / m, 1),
        fmt(cpuPerInst(t), 1),
        runs.map((s) => fmt(s, 3)).join(" "),
      ];
    });
    const head = ["target", "median s", "inst/s", "MB/s", "cpu ms/inst", "runs (s)"];
    const widths = head.map((h0, i) => Math.max(h0.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) =>
      cells
        .map((c, i) => (i === 0 || i === 5 ? pad(c, widths[i]!) : lpad(c, widths[i]!)))
        .join("  ");
    console.log(line(head));
    console.log(widths.map((w) => "-".repeat(w)).join("  "));
    for (const r of rows) console.log(line(r));
    for (const t of targets) {
      const perRun = results
        .get(t)!
        .map((x) => fmt(x.cpuMs / count, 1))
        .join(" ");
      console.log(`cpu ms/inst per run, ${t.name}: ${perRun}`);
    }

    const ratio = med(baseline) / med(kneegrade);
    const ratioSync = med(baselineSync) / med(kneegrade);
    const verdict = ratio >= TARGET_RATIO ? "meets target" : "BELOW TARGET";
    console.log(
      `\nratio kneegrade / ${baselineName} (instances/s): ${fmt(ratio)}  ` +
        `(target >= ${TARGET_RATIO}) ${verdict}`,
    );
    console.log(`ratio kneegrade / ${baselineName} + exec sync: ${fmt(ratioSync)}`);
    console.log(
      `CPU per instance, kneegrade / ${baselineName}: ${fmt(cpuPerInst(kneegrade) / cpuPerInst(baseline))}` +
        ` (goal <= 2); / ${baselineName} + exec sync: ` +
        fmt(cpuPerInst(kneegrade) / cpuPerInst(baselineSync)),
    );
    console.log(
      `listener peak RSS delta during a run: ${fmt(rssPeakDelta / 2 ** 20, 1)} MiB ` +
        "(the kernel's peak RSS, VmHWM, over the RSS at the start of the run)",
    );
    const split = [...threadCpuMs]
      .sort((x, y) => y[1] - x[1])
      .map(([kind, ms]) => `${kind} ${fmt(ms / rounds / count, 1)}`)
      .join(", ");
    console.log(`listener CPU ms/inst by thread (mean over the runs): ${split}`);
    await new Promise((r) => setImmediate(r)); // the observer's last entries
    gcObserver.disconnect();
    const gcs = new Map<string, { count: number; ms: number }>();
    for (const e of gcEntries) {
      if (!kneegradeWindows.some(([a, b]) => e.start >= a && e.start <= b)) continue;
      const g = gcs.get(e.kind) ?? { count: 0, ms: 0 };
      g.count += 1;
      g.ms += e.ms;
      gcs.set(e.kind, g);
    }
    const gcLine = [...gcs]
      .map(
        ([kind, g]) =>
          `${kind} ${fmt(g.count / rounds / count)} (${fmt(g.ms / rounds / count, 1)} ms)`,
      )
      .join(", ");
    console.log(
      `listener garbage collections per instance (main-thread pause): ${gcLine || "none"}`,
    );
    console.log(
      `verified: every run kept ${count} instances (DB rows + spool files / storescp files)`,
    );
    return 0;
  } finally {
    for (const stop of stops) await stop().catch(() => {});
    if (harness) {
      await resetDb(harness.db).catch(() => {});
      await harness.stop();
    }
    await rm(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`bench:ingest failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
