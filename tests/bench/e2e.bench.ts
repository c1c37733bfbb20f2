/**
 * `npm run bench:e2e`: the whole pipeline on this machine — storescu → listener → worker → reporter
 * → Orthanc — with the toolkit's test model (the speed of the product's four-member ensemble is in
 * `bench:infer`). Prints studies per minute and the p50/p95 latency from the moment a study is
 * complete (its last instance received + STUDY_STABLE_SECONDS) to its SR stored in the PACS (the
 * PACS's C-STORE response, `Delivery.sentAt`), for each worker mode, in alternating rounds of one
 * run against the same listener, reporter and PACS:
 *
 * - `baseline`: every radiograph read, decoded, localised and graded on the worker's thread, one
 *   after another, two studies at once (WORKER_PREPARE_THREADS 0, WORKER_CONCURRENCY 2);
 * - `pipelined`: `--threads` preparation threads (WORKER_PREPARE_THREADS), `--concurrency` studies
 *   at once;
 * - `no-threads`: as many studies at once, without preparation threads (what the threads add).
 *
 * Each round sends `--single` studies one at a time (an idle pipeline's latency), then `--burst`
 * studies at once (throughput, and latency behind a queue), and says where a study's time went.
 *
 * The CPU column is this process's CPU time (every thread) per study of the burst: on a machine
 * whose cores are busy with other work, throughput follows the CPU share the process gets, not its
 * parallelism, so compare it too.
 *
 * The reporting stage (graded → SR stored) is split into `written` (graded → report objects written
 * and recorded: waiting for a reporter slot, reading the header, encoding, durable writes) and
 * `stored` (recorded → the PACS's C-STORE response).
 *
 *   npx tsx tests/bench/e2e.bench.ts [--rounds 1] [--single 3] [--burst 9] [--stable 1]
 *     [--concurrency 4] [--threads 2] [--modes baseline,pipelined,no-threads]
 *     [--reporter-concurrency N]
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createLogger } from "@kneegrade/log";
import { startReporter } from "@kneegrade/reporter";
import { composeBilateral, radiographDicom } from "@kneegrade/sample-radiographs";
import { testModel } from "@kneegrade/test-models";
import { startWorker } from "@kneegrade/worker";
import globalSetup from "../global-setup.ts";
import { storescu } from "../helpers/dcmtk.ts";
import { startHarness } from "../helpers/env.ts";
import { startOrthanc } from "../helpers/orthanc.ts";
import { SAMPLE_CROPS } from "../helpers/small-studies.ts";
import { newUid } from "../helpers/studies.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "1" },
    single: { type: "string", default: "3" },
    burst: { type: "string", default: "9" },
    stable: { type: "string", default: "1" },
    concurrency: { type: "string", default: "4" },
    threads: { type: "string", default: "2" },
    modes: { type: "string", default: "baseline,pipelined,no-threads" },
    // REPORTER_CONCURRENCY; its default when absent.
    "reporter-concurrency": { type: "string" },
  },
});
const rounds = Number(values.rounds);
const singles = Number(values.single);
const burstSize = Number(values.burst);
const stable = Number(values.stable);

const quiet = createLogger("bench", "silent");
await globalSetup(); // the test database exists and is migrated (set TEST_DATABASE_URL to use another)
const work = await mkdtemp(join(tmpdir(), "kneegrade-bench-e2e-"));
const orthanc = await startOrthanc();
const h = await startHarness({
  STUDY_STABLE_SECONDS: String(stable),
  MODEL_DIR: await testModel("test"),
  ALLOW_TEST_MODEL: "1",
  PACS_HOST: "127.0.0.1",
  PACS_PORT: String(orthanc.dicomPort),
  PACS_AET: orthanc.aet,
  ...(values["reporter-concurrency"]
    ? { REPORTER_CONCURRENCY: values["reporter-concurrency"] }
    : {}),
});
const MODES = {
  baseline: { WORKER_PREPARE_THREADS: 0, WORKER_CONCURRENCY: 2 },
  pipelined: {
    WORKER_PREPARE_THREADS: Number(values.threads),
    WORKER_CONCURRENCY: Number(values.concurrency),
  },
  "no-threads": { WORKER_PREPARE_THREADS: 0, WORKER_CONCURRENCY: Number(values.concurrency) },
} as const;
type Mode = keyof typeof MODES;
const modesRun = values.modes.split(",").map((m) => m.trim()) as Mode[];
for (const m of modesRun) {
  if (!(m in MODES)) throw new Error(`unknown mode ${m} (modes: ${Object.keys(MODES).join(", ")})`);
}
type Study = { uid: string; path: string };
const reporter = await startReporter(h.config, h.db, quiet);

let written = 0;
async function newStudies(n: number): Promise<Study[]> {
  const files: Study[] = [];
  for (let k = 0; k < n; k++) {
    const i = written++;
    const r = await composeBilateral([SAMPLE_CROPS[i % 5]!, SAMPLE_CROPS[(i + 2) % 5]!], i);
    const uid = newUid();
    const path = join(work, `${i}.dcm`);
    await writeFile(path, radiographDicom(r, { studyInstanceUid: uid }));
    files.push({ uid, path });
  }
  return files;
}

async function waitReported(batch: Study[]) {
  const deadline = Date.now() + 600_000;
  for (;;) {
    const reported = await h.db.study.count({
      where: { studyInstanceUid: { in: batch.map((f) => f.uid) }, status: "REPORTED" },
    });
    if (reported === batch.length) return;
    if (Date.now() > deadline)
      throw new Error(`only ${reported} of ${batch.length} studies reported`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function send(f: Study) {
  const sent = await storescu(h.target, [f.path]);
  if (sent.code !== 0) throw new Error(sent.stderr);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Latency per study (stable → SR stored in the PACS), the last SR's store time, stage medians. */
async function measure(batch: Study[]) {
  const rows = await h.db.study.findMany({
    where: { studyInstanceUid: { in: batch.map((f) => f.uid) } },
    include: {
      reports: { include: { deliveries: true } },
      jobs: { include: { instances: true } },
    },
  });
  const latencies: number[] = [];
  const stages: Record<string, number[]> = {
    queued: [],
    grading: [],
    decode: [],
    localise: [],
    predict: [],
    reporting: [],
    written: [],
    stored: [],
  };
  let lastSent = 0;
  for (const s of rows) {
    const sr = s.reports.find((r) => r.sopClassUid === "1.2.840.10008.5.1.4.1.1.88.33");
    const sent = sr?.deliveries[0]?.sentAt?.getTime() ?? Number.NaN;
    const complete = s.lastReceivedAt.getTime() + stable * 1000;
    latencies.push(sent - complete);
    lastSent = Math.max(lastSent, sent);
    const job = s.jobs.at(-1);
    if (!job?.startedAt || !job.finishedAt) continue;
    stages.queued!.push(job.startedAt.getTime() - complete);
    stages.grading!.push(job.finishedAt.getTime() - job.startedAt.getTime());
    stages.reporting!.push(sent - job.finishedAt.getTime());
    if (sr) {
      stages.written!.push(sr.createdAt.getTime() - job.finishedAt.getTime());
      stages.stored!.push(sent - sr.createdAt.getTime());
    }
    for (const i of job.instances) {
      const t = i.timingsMs as Record<string, number>;
      for (const k of ["decode", "localise", "predict"]) stages[k]!.push(t[k] ?? 0);
    }
  }
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  const where = Object.entries(stages)
    .map(([k, v]) => `${k} ${median(v).toFixed(0)}`)
    .join(", ");
  return { p50: q(0.5), p95: q(0.95), lastSent, where };
}

interface Row {
  round: number;
  mode: Mode;
  idle: Awaited<ReturnType<typeof measure>>;
  loaded: Awaited<ReturnType<typeof measure>>;
  perMinute: number;
  /** CPU time of this process (listener, worker, reporter; every thread) per study of the burst. */
  cpuMsPerStudy: number;
}

async function runRound(round: number, mode: Mode): Promise<Row> {
  const worker = await startWorker({ ...h.config, ...MODES[mode] }, h.db, quiet);
  try {
    const single = await newStudies(singles);
    const burst = await newStudies(burstSize);
    for (const f of single) {
      await send(f);
      await waitReported([f]);
    }
    const idle = await measure(single);
    const start = Date.now();
    const cpu = process.cpuUsage();
    for (const f of burst) await send(f);
    await waitReported(burst);
    const used = process.cpuUsage(cpu);
    const loaded = await measure(burst);
    const perMinute = burst.length / ((loaded.lastSent - start) / 60_000);
    const cpuMsPerStudy = (used.user + used.system) / 1000 / burst.length;
    return { round, mode, idle, loaded, perMinute, cpuMsPerStudy };
  } finally {
    await worker.close();
  }
}

function printHeader() {
  console.log(
    `End to end on this machine (bilateral studies, 2 knees each; STUDY_STABLE_SECONDS ${stable}; the toolkit's test model; REPORTER_CONCURRENCY ${h.config.REPORTER_CONCURRENCY}; ${singles} studies one at a time, then ${burstSize} at once, per round and mode):`,
  );
  for (const [mode, settings] of Object.entries(MODES)) {
    if (!modesRun.includes(mode as Mode)) continue;
    const values = Object.entries(settings).map(([k, v]) => `${k} ${v}`);
    console.log(`  ${mode}: ${values.join(", ")}`);
  }
  console.log(
    "| round | mode | one at a time p50 / p95 ms | at once: studies/min | ratio to baseline | p50 ms | p95 ms | CPU ms/study | medians ms: queued, grading (decode, localise, predict per radiograph), reporting (written, stored) |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
}

/** A round's rows, each mode against that round's baseline. */
function printRound(rows: Row[]) {
  const base = rows.find((r) => r.mode === "baseline") ?? rows[0]!;
  for (const r of rows) {
    console.log(
      `| ${r.round} | ${r.mode} | ${r.idle.p50.toFixed(0)} / ${r.idle.p95.toFixed(0)} | ${r.perMinute.toFixed(1)} | ${(r.perMinute / base.perMinute).toFixed(2)} | ${r.loaded.p50.toFixed(0)} | ${r.loaded.p95.toFixed(0)} | ${r.cpuMsPerStudy.toFixed(0)} | ${r.loaded.where} |`,
    );
  }
}

try {
  const rows: Row[] = [];
  printHeader();
  for (let round = 1; round <= rounds; round++) {
    // Alternating which goes first, so no mode always runs on a warmer machine.
    const modes = modesRun;
    const order = round % 2 ? modes : [...modes].reverse();
    const these: Row[] = [];
    for (const mode of order) these.push(await runRound(round, mode));
    printRound(these);
    rows.push(...these);
  }
  if (rounds > 1) {
    for (const mode of modesRun) {
      const ratios = rows
        .filter((r) => r.mode === mode)
        .map((r) => {
          const round = rows.filter((b) => b.round === r.round);
          const base = round.find((b) => b.mode === "baseline") ?? round[0]!;
          return r.perMinute / base.perMinute;
        });
      const p95 = rows.filter((r) => r.mode === mode).map((r) => r.loaded.p95);
      console.log(
        `${mode}: median ratio to baseline ${median(ratios).toFixed(2)} (${ratios.map((x) => x.toFixed(2)).join(", ")}), median p95 ${median(p95).toFixed(0)} ms`,
      );
    }
  }
} finally {
  await reporter.close();
  await h.stop();
  await orthanc.stop();
  await rm(work, { recursive: true, force: true });
}
process.exit(0);
