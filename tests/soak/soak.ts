/**
 * The soak: the whole stack under steady arrivals from several modalities, with bursts, while
 * faults hit it on a schedule; then every knee study must be REPORTED exactly once with its SR in
 * the PACS, every malformed object refused with its reason, every non-knee study skipped, every
 * fault recovered and memory flat. `runSoak` returns the report; `npm run soak` (main.ts) writes
 * it and its chart, and tests/soak/soak.slow.test.ts runs a short form.
 */
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QUEUES } from "@kneegrade/contracts";
import { createDb } from "@kneegrade/db";
import { createQueue } from "@kneegrade/queue";
import { testModel } from "@kneegrade/test-models";
import { freePort } from "../helpers/cli.ts";
import { REPO_ROOT } from "../helpers/paths.ts";
import {
  composePictures,
  type KneeKind,
  type Malformed,
  type MalformedKind,
  MODALITIES,
  type Modality,
  makeMalformed,
  makeStudy,
  type Study,
  sendFiles,
  sendMalformed,
} from "./load.ts";
import {
  Service,
  type ServiceExit,
  startPacs,
  startPostgres,
  startRedis,
  startSpool,
} from "./stack.ts";

export const FAULTS = [
  "worker-kill",
  "redis-restart",
  "postgres-restart",
  "pacs-stop",
  "listener-term",
  "spool-full",
  "pacs-slow",
  "redis-flush-restart",
] as const;
export type FaultName = (typeof FAULTS)[number];

export interface SoakOptions {
  minutes: number;
  /** Knee studies per hour (steady rate; bursts come on top). */
  rate: number;
  faults: readonly FaultName[];
  /** "shipped": models/dist; "test": the toolkit's small test model. */
  model: "shipped" | "test";
  /** How long, after the last send, the pipeline may take to report what was sent. */
  drainMinutes: number;
  /** Seconds between samples of memory, queues, tables and spool. */
  sampleSeconds?: number;
  /** Where the processes' logs go (kept after the run). */
  logDir: string;
  say?: (line: string) => void;
}

/**
 * The memory bound: after the first tenth of the run, and at least two minutes (models loaded,
 * V8 and onnxruntime arenas warmed) — counted from a process's own start when a fault restarted
 * it — the median RSS of a process's last quarter may exceed that of its first quarter by at
 * most 25 % or 64 MB, whichever is larger. A leak of a radiograph's buffers per study (≥ 1 MB) over
 * the hundreds of objects of a 30-minute run breaks it; the noise of garbage collection and of
 * the arenas growing to the largest image does not.
 */
export const MEMORY_BOUND = { fraction: 0.25, mb: 64 };

interface Tracked {
  study: Study;
  modality: string;
  /** When the sender finished its last association (the study's last instance acknowledged). */
  lastSentAt?: number;
  attempts: number;
  failures: string[];
}

interface Sample {
  t: number;
  processes: Record<
    string,
    { rssMb: number; heapMb: number; loopP99Ms: number; cpuSeconds: number; incarnation: number }
  >;
  queues: Record<string, number>;
  tablesMb: number;
  tables: Record<string, number>;
  spoolMb: number;
}

export interface FaultRecord {
  name: FaultName;
  start: number;
  end: number;
  detail: string;
  skipped?: string;
  /** Seconds from the fault's end until every knee study sent before it was reported. */
  recoverySeconds?: number | null;
  recovered?: boolean;
}

export interface SoakReport {
  startedAt: string;
  minutes: number;
  rate: number;
  model: string;
  machine: { cpu: string; cores: number };
  sent: number;
  reported: number;
  lost: number;
  duplicated: number;
  lostStudies: string[];
  duplicatedStudies: string[];
  byKind: Record<string, number>;
  repeats: number;
  nonKnee: { sent: number; skipped: number };
  malformed: { sent: number; refusedWithReason: number; problems: string[] };
  latencySeconds: { p50: number; p95: number; p99: number; max: number };
  latencyOverTime: { minute: number; n: number; p50: number; p95: number; p99: number }[];
  faults: FaultRecord[];
  unexpectedExits: ServiceExit[];
  memory: Record<
    string,
    {
      startMb: number;
      endMb: number;
      growthMb: number;
      boundMb: number;
      ok: boolean;
      /** Restarted too late in the run to have settled samples of its own. */
      unmeasured?: boolean;
    }
  >;
  cpuSecondsPerStudy: number;
  tablesMb: { start: number; end: number };
  spoolMb: { start: number; end: number };
  sendRetries: number;
  ok: boolean;
  failures: string[];
  samples: Sample[];
  studies: { uid: string; kind: string; sentAt: number; latency: number | null; srs: number }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function quantile(sorted: number[], p: number) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

const median = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

/** The values of one Prometheus text exposition, by metric name and label set. */
function parseMetrics(text: string) {
  const out: { name: string; labels: string; value: number }[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m) out.push({ name: m[1]!, labels: m[2] ?? "", value: Number(m[3]) });
  }
  return out;
}

/**
 * Each fault's place in the run, as a fraction of it, and how long it lasts (ms, scaled with the
 * run up to its cap).
 */
function schedule(faults: readonly FaultName[], minutes: number) {
  const span = 0.8;
  return faults.map((name, i) => ({
    name,
    at: (0.08 + (span * i) / Math.max(1, faults.length)) * minutes * 60_000,
  }));
}

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const say = o.say ?? (() => {});
  // The run's clock starts once the stack is up (reset below).
  let t0 = Date.now();
  const since = (t: number) => ((t - t0) / 1000).toFixed(0);
  const work = await mkdtemp(join(tmpdir(), "kneegrade-soak-"));
  // PostgreSQL runs as its own user (as root: `postgres`), which must reach its folder inside.
  await chmod(work, 0o755);
  await mkdir(o.logDir, { recursive: true });
  const cleanups: (() => Promise<void>)[] = [];
  const sampleMs = (o.sampleSeconds ?? 10) * 1000;
  try {
    say("starting PostgreSQL, Redis, Orthanc and the spool");
    const postgres = await startPostgres(join(work, "pg"));
    cleanups.push(() => postgres.close());
    const redis = await startRedis(join(work, "redis"));
    cleanups.push(() => redis.close());
    const pacs = await startPacs(join(work, "pacs"));
    cleanups.push(() => pacs.close());
    const spool = await startSpool(join(work, "spool-disk"), 1536);
    cleanups.push(() => spool.close());
    const pictures = await composePictures();
    const files = join(work, "studies");

    const listenerPort = await freePort();
    const modelDir = o.model === "test" ? await testModel("test") : join(REPO_ROOT, "models/dist");
    const env: Record<string, string> = {
      DATABASE_URL: postgres.url,
      REDIS_URL: redis.url,
      QUEUE_PREFIX: "soak",
      LISTENER_HOST: "127.0.0.1",
      LISTENER_PORT: String(listenerPort),
      SPOOL_DIR: spool.dir,
      SPOOL_MIN_FREE_MB: "64",
      STUDY_STABLE_SECONDS: "5",
      PACS_HOST: "127.0.0.1",
      PACS_PORT: String(pacs.port),
      PACS_AET: pacs.aet,
      DELIVERY_BACKOFF_SECONDS: "5",
      MODEL_DIR: modelDir,
      ALLOW_TEST_MODEL: o.model === "test" ? "1" : "0",
      INFERENCE_THREADS: "1",
      WORKER_CONCURRENCY: "1",
      // A killed worker's jobs are taken again after this; long enough that a live worker on a
      // busy 2-core machine always renews its lock in time.
      JOB_LOCK_SECONDS: "15",
      METRICS_HOST: "127.0.0.1",
      METRICS_PORT: "0",
      REVIEW_HOST: "127.0.0.1",
      REVIEW_PORT: "0",
      LOG_LEVEL: "info",
    };
    const exits: ServiceExit[] = [];
    const onExit = (e: ServiceExit) => {
      exits.push(e);
      if (!e.expected) say(`t+${since(e.at)}s ${e.role} exited on its own (${e.code ?? e.signal})`);
    };
    const services = [
      new Service("listener", env, ["--only", "listener"], o.logDir, onExit),
      new Service("worker-a", env, ["--only", "worker"], o.logDir, onExit),
      new Service("worker-b", env, ["--only", "worker"], o.logDir, onExit),
      new Service("reporter", env, ["--only", "reporter"], o.logDir, onExit),
      new Service("review", env, ["--only", "review"], o.logDir, onExit),
    ];
    const byRole = (r: string) => services.find((s) => s.role === r)!;
    cleanups.push(async () => {
      for (const s of [...services].reverse()) await s.stop();
    });
    for (const s of services) await s.start();
    say(`stack up in ${since(Date.now())}s: ${services.map((s) => s.role).join(", ")}`);
    t0 = Date.now();

    // ---------------------------------------------------------- the PACS, watched
    /** SR SOP Instance UIDs seen in the PACS per study, and when each first appeared. */
    const srs = new Map<string, Map<string, number>>();
    let lastChange = 0;
    let watching = true;
    const watch = async () => {
      while (watching) {
        try {
          const r = (await (
            await fetch(`${pacs.httpUrl}/changes?since=${lastChange}&limit=200`)
          ).json()) as {
            Changes: { ChangeType: string; ID: string }[];
            Last: number;
            Done: boolean;
          };
          for (const c of r.Changes) {
            if (c.ChangeType !== "NewInstance") continue;
            const tags = (await (
              await fetch(`${pacs.httpUrl}/instances/${c.ID}/simplified-tags`)
            ).json()) as Record<string, string>;
            if (tags.Modality !== "SR") continue;
            const study = tags.StudyInstanceUID!;
            const seen = srs.get(study) ?? new Map<string, number>();
            if (!seen.has(tags.SOPInstanceUID!)) seen.set(tags.SOPInstanceUID!, Date.now());
            srs.set(study, seen);
          }
          lastChange = r.Last;
          if (!r.Done) continue;
        } catch {
          // the PACS is stopped (a fault): try again
        }
        await sleep(1000);
      }
    };
    const watcher = watch();

    // ---------------------------------------------------------- samples
    const samples: Sample[] = [];
    let sampling = true;
    const cpuDone = new Map<string, number>();
    const lastCpu = new Map<string, { incarnation: number; cpu: number }>();
    const sampleOnce = async () => {
      const s: Sample = {
        t: Date.now(),
        processes: {},
        queues: {},
        tablesMb: 0,
        tables: {},
        spoolMb: 0,
      };
      for (const svc of services) {
        if (!svc.metricsPort) continue;
        try {
          const res = await fetch(`http://127.0.0.1:${svc.metricsPort}/metrics`, {
            signal: AbortSignal.timeout(5000),
          });
          const m = parseMetrics(await res.text());
          const v = (name: string) => m.find((x) => x.name === name)?.value ?? Number.NaN;
          const cpu = v("process_cpu_seconds_total");
          const prev = lastCpu.get(svc.role);
          if (prev && prev.incarnation !== svc.incarnation) {
            cpuDone.set(svc.role, (cpuDone.get(svc.role) ?? 0) + prev.cpu);
          }
          lastCpu.set(svc.role, { incarnation: svc.incarnation, cpu });
          s.processes[svc.role] = {
            rssMb: v("process_resident_memory_bytes") / 2 ** 20,
            heapMb: v("nodejs_heap_size_used_bytes") / 2 ** 20,
            loopP99Ms: v("nodejs_eventloop_lag_p99_seconds") * 1000,
            cpuSeconds: (cpuDone.get(svc.role) ?? 0) + cpu,
            incarnation: svc.incarnation,
          };
          if (svc.role === "listener") {
            for (const x of m.filter((x) => x.name === "kneegrade_queue_jobs")) {
              const queue = /queue="([^"]+)"/.exec(x.labels)?.[1];
              const state = /state="([^"]+)"/.exec(x.labels)?.[1];
              if (queue && state && ["waiting", "active", "delayed", "prioritized"].includes(state))
                s.queues[queue] = (s.queues[queue] ?? 0) + x.value;
            }
          }
        } catch {
          // down (a fault, or restarting): no sample of it this time
        }
      }
      try {
        s.tables = await postgres.sizes();
        s.tablesMb = Object.values(s.tables).reduce((a, b) => a + b, 0) / 2 ** 20;
      } catch {
        s.tablesMb = Number.NaN;
      }
      s.spoolMb = (await spool.bytes().catch(() => Number.NaN)) / 2 ** 20;
      samples.push(s);
    };
    const sampler = (async () => {
      while (sampling) {
        await sampleOnce();
        await sleep(sampleMs);
      }
    })();

    // ---------------------------------------------------------- load
    const tracked: Tracked[] = [];
    const nonKnee: Tracked[] = [];
    const malformed: (Malformed & { status: number | null })[] = [];
    let repeats = 0;
    let sendRetries = 0;
    const inflight = new Set<Promise<void>>();
    let sending = true;
    /** A modality gives up on a send (and the study counts as lost) half-way into the drain. */
    const sendEnd = () => t0 + o.minutes * 60_000 + o.drainMinutes * 30_000;

    /** Sends a study as its modality would: each association retried until it is stored. */
    const deliver = async (t: Tracked, modality: Modality) => {
      for (const [i, group] of t.study.groups.entries()) {
        if (i > 0) await sleep(1500); // a late instance while the study is still open
        for (;;) {
          t.attempts += 1;
          const r = await sendFiles(listenerPort, modality, group, t.study.storescuArgs);
          if (r.ok) break;
          sendRetries += 1;
          t.failures.push(`${since(Date.now())}s ${r.detail}`);
          if (Date.now() > sendEnd()) return;
          await sleep(3000);
        }
      }
      t.lastSentAt = Date.now();
    };
    const track = (p: Promise<void>) => {
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    };
    const KINDS: KneeKind[] = [
      "bilateral-small",
      "realdx",
      "bilateral",
      "single-knee",
      "two-part",
      "realdx",
      "bilateral-small",
      "bilateral",
    ];
    const MALFORMED: MalformedKind[] = ["invalid-uid", "bad-dimensions", "encoding-mismatch"];
    let n = 0;
    const sendKnee = async (modality: Modality) => {
      const study = await makeStudy(files, pictures, KINDS[n % KINDS.length]!, n);
      n += 1;
      const t: Tracked = { study, modality: modality.aet, attempts: 0, failures: [] };
      tracked.push(t);
      track(deliver(t, modality));
      return t;
    };
    const loadLoop = async () => {
      const interval = 3_600_000 / o.rate;
      const burstEvery = Math.max(5 * 60_000, (o.minutes * 60_000) / 6);
      let nextBurst = t0 + Math.min(burstEvery, (o.minutes * 60_000) / 2);
      let i = 0;
      while (sending) {
        const due = t0 + i * interval;
        if (Date.now() < due) await sleep(Math.min(1000, due - Date.now()));
        if (!sending) break;
        if (Date.now() < due) continue;
        const modality = MODALITIES[i % MODALITIES.length]!;
        await sendKnee(modality);
        if (i % 4 === 1) {
          const study = await makeStudy(files, pictures, "non-knee", i);
          const t: Tracked = { study, modality: modality.aet, attempts: 0, failures: [] };
          nonKnee.push(t);
          track(deliver(t, modality));
        }
        if (i % 6 === 3) {
          const m = await makeMalformed(files, MALFORMED[malformed.length % MALFORMED.length]!);
          track(
            sendMalformed(listenerPort, m).then((status) => {
              malformed.push({ ...m, status });
            }),
          );
        }
        if (i % 5 === 4) {
          // A repeated send of a study already delivered: stored again, graded and reported once.
          const done = tracked.filter((t) => t.lastSentAt !== undefined);
          const again = done[(i * 7) % Math.max(1, done.length)];
          if (again) {
            repeats += 1;
            const copy: Tracked = { ...again, attempts: 0, failures: [] };
            track(
              deliver(copy, MODALITIES[(i + 1) % MODALITIES.length]!).then(() => {
                again.attempts += copy.attempts;
              }),
            );
          }
        }
        if (Date.now() >= nextBurst) {
          // A burst: the three rooms finish a round of knee films at once.
          say(`t+${since(Date.now())}s burst of 6 studies`);
          for (let b = 0; b < 6; b++) await sendKnee(MODALITIES[b % MODALITIES.length]!);
          nextBurst += burstEvery;
        }
        i += 1;
      }
    };
    const loader = loadLoop();

    // ---------------------------------------------------------- faults
    const faultRecords: FaultRecord[] = [];
    const gradeQueue = createQueue(QUEUES.gradeStudy, {
      REDIS_URL: redis.url,
      QUEUE_PREFIX: "soak",
    });
    gradeQueue.on("error", () => {});
    cleanups.push(() => gradeQueue.close());
    const scale = (ms: number, min: number) => Math.max(min, (ms * o.minutes) / 30);
    const runFault = async (name: FaultName): Promise<FaultRecord> => {
      const start = Date.now();
      const rec: FaultRecord = { name, start, end: start, detail: "" };
      switch (name) {
        case "worker-kill": {
          const victim = byRole(faultRecords.length % 2 ? "worker-b" : "worker-a");
          let held = 0;
          const deadline = Date.now() + 60_000;
          while (Date.now() < deadline) {
            const active = await gradeQueue.getActive().catch(() => []);
            held = active.filter((j) => j.processedBy === victim.workerName).length;
            if (held > 0) break;
            await sleep(50);
          }
          rec.start = Date.now();
          await victim.bounce("SIGKILL", 5_000).catch(() => {});
          rec.detail = `SIGKILL ${victim.role} holding ${held} job(s), restarted after 5 s`;
          break;
        }
        case "redis-restart":
        case "redis-flush-restart": {
          const keep = name === "redis-restart";
          await redis.stop(keep);
          await sleep(3_000);
          await redis.start();
          rec.detail = `Redis stopped ${keep ? "after saving its data" : "without its data"}, 3 s down`;
          break;
        }
        case "postgres-restart": {
          await postgres.stop();
          await sleep(3_000);
          await postgres.start();
          rec.detail = "PostgreSQL stopped (fast), 3 s down";
          break;
        }
        case "pacs-stop": {
          const down = scale(180_000, 30_000);
          await pacs.stop();
          await sleep(down);
          await pacs.start();
          rec.detail = `Orthanc stopped for ${down / 1000} s`;
          break;
        }
        case "pacs-slow": {
          const slow = scale(180_000, 30_000);
          pacs.setDelay(3_000);
          await sleep(slow);
          pacs.setDelay(0);
          rec.detail = `every PACS answer delayed 3 s for ${slow / 1000} s`;
          break;
        }
        case "listener-term": {
          // A full-size study in flight when the listener is told to stop.
          const study = await makeStudy(files, pictures, "bilateral", n++);
          const t: Tracked = { study, modality: "DX_ROOM1", attempts: 0, failures: [] };
          tracked.push(t);
          track(deliver(t, MODALITIES[0]!));
          await sleep(150);
          rec.start = Date.now();
          await byRole("listener")
            .bounce("SIGTERM", 2_000)
            .catch(() => {});
          rec.detail = "SIGTERM to the listener during an association, restarted after 2 s";
          break;
        }
        case "spool-full": {
          if (!spool.tmpfs) {
            rec.skipped = "the spool is not on a tmpfs of its own (needs root)";
            break;
          }
          const filled = await spool.fill(32);
          const before = sendRetries;
          const deadline = Date.now() + 120_000;
          while (sendRetries === before && Date.now() < deadline) await sleep(500);
          const refusedAfter = (Date.now() - start) / 1000;
          await sleep(scale(60_000, 15_000));
          await spool.free();
          rec.detail = `${(filled / 2 ** 20).toFixed(0)} MB written to the spool's disk, first refusal after ${refusedAfter.toFixed(1)} s (${sendRetries - before} refused sends), then freed`;
          if (sendRetries === before) rec.detail += "; no send was refused";
          break;
        }
      }
      rec.end = Date.now();
      say(`t+${since(rec.start)}s fault ${name}: ${rec.skipped ?? rec.detail}`);
      return rec;
    };
    const faulter = (async () => {
      for (const f of schedule(o.faults, o.minutes)) {
        const wait = t0 + f.at - Date.now();
        if (wait > 0) await sleep(wait);
        faultRecords.push(await runFault(f.name));
      }
    })();

    await sleep(Math.max(0, t0 + o.minutes * 60_000 - Date.now()));
    sending = false;
    await loader;
    await faulter;
    say(`t+${since(Date.now())}s sending stopped; ${tracked.length} knee studies; draining`);
    await Promise.all([...inflight]);

    // ---------------------------------------------------------- drain
    const db = createDb(postgres.url);
    cleanups.push(() => db.$disconnect());
    const kneeUids = tracked.map((t) => t.study.uid);
    const drainDeadline = Date.now() + o.drainMinutes * 60_000;
    for (;;) {
      const reported = await db.study.count({
        where: { studyInstanceUid: { in: kneeUids }, status: "REPORTED" },
      });
      const inPacs = kneeUids.filter((u) => (srs.get(u)?.size ?? 0) > 0).length;
      if (
        (reported === kneeUids.length && inPacs === kneeUids.length) ||
        Date.now() > drainDeadline
      )
        break;
      await sleep(2000);
    }
    await sleep(3000); // the watcher's last round, and any late duplicate
    watching = false;
    sampling = false;
    await watcher;
    await sampler;
    await sampleOnce();

    // ---------------------------------------------------------- checks
    const failures: string[] = [];
    const rows = await db.study.findMany({
      where: { studyInstanceUid: { in: [...kneeUids, ...nonKnee.map((t) => t.study.uid)] } },
      include: {
        reports: { where: { sopClassUid: { startsWith: "1.2.840.10008.5.1.4.1.1.88." } } },
      },
    });
    const row = new Map(rows.map((r) => [r.studyInstanceUid, r]));
    const lostStudies: string[] = [];
    const duplicatedStudies: string[] = [];
    const studies: SoakReport["studies"] = [];
    for (const t of tracked) {
      const r = row.get(t.study.uid);
      const seen = srs.get(t.study.uid);
      const count = seen?.size ?? 0;
      // Each revision of a study is reported once (a late instance after grading makes a
      // revision); a second SR for one revision is a duplicate.
      const revisions = r?.revision ?? 1;
      if (r?.status !== "REPORTED" || count === 0 || t.lastSentAt === undefined) {
        lostStudies.push(t.study.uid);
      }
      if (count > revisions || (r?.reports.length ?? 0) > revisions)
        duplicatedStudies.push(t.study.uid);
      const last = seen ? Math.max(...seen.values()) : undefined;
      studies.push({
        uid: t.study.uid,
        kind: t.study.kind,
        sentAt: ((t.lastSentAt ?? Number.NaN) - t0) / 1000,
        latency: last && t.lastSentAt ? (last - t.lastSentAt) / 1000 : null,
        srs: count,
      });
    }
    if (lostStudies.length) {
      failures.push(`${lostStudies.length} knee studies lost`);
      for (const uid of lostStudies.slice(0, 10)) {
        const r = row.get(uid);
        const t = tracked.find((x) => x.study.uid === uid)!;
        say(
          `lost ${uid} (${t.study.kind}): status ${r?.status ?? "no row"} ${r?.statusReason ?? ""}, SRs ${srs.get(uid)?.size ?? 0}, sent ${t.lastSentAt ? "yes" : "no"}, ${t.failures.slice(-2).join(" | ")}`,
        );
      }
    }
    if (duplicatedStudies.length) failures.push(`${duplicatedStudies.length} studies duplicated`);
    const skipped = nonKnee.filter((t) => {
      const r = row.get(t.study.uid);
      return r?.status === "REFUSED" && r.statusReason?.startsWith("NOT_KNEE");
    }).length;
    if (skipped !== nonKnee.length)
      failures.push(
        `${nonKnee.length - skipped} of ${nonKnee.length} non-knee studies not skipped`,
      );
    const problems: string[] = [];
    for (const m of malformed) {
      const audit = await db.auditEvent.findFirst({
        where: { event: "instance.refused", sopInstanceUid: m.sopInstanceUid },
      });
      const code = (audit?.details as { code?: string } | null)?.code;
      const stored = await db.instance.count({ where: { sopInstanceUid: m.sopInstanceUid } });
      if (m.status === 0 || stored > 0) problems.push(`${m.kind}: stored`);
      else if (code !== m.code)
        problems.push(`${m.kind}: refusal recorded as ${code ?? "nothing"}`);
    }
    if (problems.length) failures.push(`malformed objects: ${problems.join("; ")}`);

    const latencies = studies
      .map((s) => s.latency)
      .filter((l): l is number => l !== null)
      .sort((a, b) => a - b);
    const windowMin = Math.max(1, Math.round(o.minutes / 10));
    const latencyOverTime: SoakReport["latencyOverTime"] = [];
    for (let m = 0; m < o.minutes; m += windowMin) {
      const w = studies
        .filter((s) => s.latency !== null && s.sentAt >= m * 60 && s.sentAt < (m + windowMin) * 60)
        .map((s) => s.latency!)
        .sort((a, b) => a - b);
      latencyOverTime.push({
        minute: m,
        n: w.length,
        p50: quantile(w, 0.5),
        p95: quantile(w, 0.95),
        p99: quantile(w, 0.99),
      });
    }

    for (const f of faultRecords) {
      if (f.skipped) continue;
      const before = tracked.filter((t) => t.lastSentAt !== undefined && t.lastSentAt <= f.end);
      const times = before.map((t) => {
        const seen = srs.get(t.study.uid);
        return seen ? Math.max(...seen.values()) : undefined;
      });
      f.recovered = times.every((x) => x !== undefined);
      f.recoverySeconds = f.recovered
        ? Math.max(0, (Math.max(f.end, ...(times as number[])) - f.end) / 1000)
        : null;
      if (!f.recovered) failures.push(`fault ${f.name} not recovered`);
    }

    const unexpectedExits = exits.filter((e) => !e.expected);
    for (const svc of services) {
      const ready = svc.metricsPort
        ? await fetch(`http://127.0.0.1:${svc.metricsPort}/readyz`)
            .then((r) => r.ok)
            .catch(() => false)
        : false;
      if (!ready) failures.push(`${svc.role} not ready at the end`);
    }

    const memory: SoakReport["memory"] = {};
    const settleMs = Math.max(o.minutes * 6_000, 120_000);
    for (const svc of services) {
      // A process restarted by a fault is measured from its own warm-up: its predecessor's RSS
      // says nothing of its growth, and its first minutes are arenas growing, not a leak.
      const from = Math.max(t0, svc.startedAt) + settleMs;
      const settled = samples.filter((s) => s.t >= from);
      if (settled.length < 8) {
        memory[svc.role] = {
          startMb: NaN,
          endMb: NaN,
          growthMb: NaN,
          boundMb: NaN,
          ok: true,
          unmeasured: true,
        };
        continue;
      }
      const quarter = Math.floor(settled.length / 4);
      const rss = (xs: Sample[]) =>
        xs.map((s) => s.processes[svc.role]?.rssMb).filter((v): v is number => v !== undefined);
      const start = median(rss(settled.slice(0, quarter)));
      const end = median(rss(settled.slice(-quarter)));
      const boundMb = Math.max(MEMORY_BOUND.mb, MEMORY_BOUND.fraction * start);
      const ok = !(end - start > boundMb);
      memory[svc.role] = { startMb: start, endMb: end, growthMb: end - start, boundMb, ok };
      if (!ok)
        failures.push(
          `${svc.role} RSS grew ${(end - start).toFixed(0)} MB (bound ${boundMb.toFixed(0)} MB)`,
        );
    }
    const last = samples.at(-1)!;
    const cpuTotal = Object.values(last.processes).reduce((a, p) => a + p.cpuSeconds, 0);
    const reported = tracked.length - lostStudies.length;
    const cpuModel = (await import("node:os")).cpus()[0]?.model ?? "unknown";
    const byKind: Record<string, number> = {};
    for (const t of tracked) byKind[t.study.kind] = (byKind[t.study.kind] ?? 0) + 1;

    return {
      startedAt: new Date(t0).toISOString(),
      minutes: o.minutes,
      rate: o.rate,
      model: o.model === "test" ? "toolkit test model" : "shipped model (models/dist)",
      machine: { cpu: cpuModel, cores: (await import("node:os")).cpus().length },
      sent: tracked.length,
      reported,
      lost: lostStudies.length,
      duplicated: duplicatedStudies.length,
      lostStudies,
      duplicatedStudies,
      byKind,
      repeats,
      nonKnee: { sent: nonKnee.length, skipped },
      malformed: {
        sent: malformed.length,
        refusedWithReason: malformed.length - problems.length,
        problems,
      },
      latencySeconds: {
        p50: quantile(latencies, 0.5),
        p95: quantile(latencies, 0.95),
        p99: quantile(latencies, 0.99),
        max: latencies.at(-1) ?? Number.NaN,
      },
      latencyOverTime,
      faults: faultRecords,
      unexpectedExits,
      memory,
      cpuSecondsPerStudy: reported ? cpuTotal / reported : Number.NaN,
      tablesMb: { start: samples[0]?.tablesMb ?? Number.NaN, end: last.tablesMb },
      spoolMb: { start: samples[0]?.spoolMb ?? Number.NaN, end: last.spoolMb },
      sendRetries,
      ok: failures.length === 0,
      failures,
      samples,
      studies,
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await rm(work, { recursive: true, force: true }).catch(() => {});
  }
}
