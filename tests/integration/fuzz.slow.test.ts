/**
 * Fuzzing the listener over real DICOM: a seeded generator (tests/helpers/fuzz.ts) mutates small
 * valid radiographs — bit flips, overwritten bytes, truncation, lying length fields, hostile UIDs,
 * extreme Rows/Columns and BitsAllocated, pixel data of the wrong length, wrong VRs, duplicate
 * tags, sequences left open, encapsulated pixel data under a native transfer syntax, a command
 * that disagrees with its data set — and sends each one with dcmjs-dimse's Client (real
 * association, real C-STORE command, real P-DATA; the data set goes on the wire as raw bytes) to a
 * real in-process listener on the local PostgreSQL and Redis.
 *
 * It holds the listener to what it promises a modality (docs/OPERATIONS.md, "What happens to a study"; docs/RELIABILITY.md):
 * every object gets a DIMSE status, the listener keeps answering C-ECHO and keeps its memory
 * bounded, an unmutated object is stored, an object acknowledged with 0000 is recorded, lies under
 * SPOOL_DIR as `<study>/<series>/<sop>.dcm`, byte for byte as sent and readable (dicom-parser; DCMTK
 * dcmdump on a sample), and a valid study sent afterwards is still stored and queued.
 *
 * FUZZ_SEED (default 20261201; `random` draws one), FUZZ_COUNT (default 1000) and FUZZ_ONLY
 * (comma-separated object numbers: rebuild and send just those, exactly as in the full run) select
 * the objects; FUZZ_TIMEOUT_MS (default 15000) bounds the wait for one answer and
 * FUZZ_MAX_RSS_GROWTH_MB (default 300) the growth of the process's RSS. The figures go to stdout as
 * one JSON line and to var/fuzz-report.json; a Part 10 file of each example failure (file meta from
 * its command) to var/fuzz-failures/. See docs/RELIABILITY.md.
 */
import { randomInt } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve, sep } from "node:path";
import { QUEUES } from "@kneegrade/contracts";
import { cEcho, encodeFileMetaInformation, instanceDigest } from "@kneegrade/dicom";
import { createQueue } from "@kneegrade/queue";
import type { Queue } from "bullmq";
import dicomParser from "dicom-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { echoscu, tool } from "../helpers/dcmtk.ts";
import { type Harness, sendStudy, startHarness, waitFor } from "../helpers/env.ts";
import {
  buildBases,
  type FuzzObject,
  generateObject,
  isValidUid,
  MUTATION_KINDS,
  NATIVE_SYNTAXES,
  Rng,
  type SendOutcome,
  sendObjects,
  uidPools,
} from "../helpers/fuzz.ts";
import { REPO_ROOT } from "../helpers/paths.ts";
import { buildStudy } from "../helpers/studies.ts";

const SEED =
  process.env.FUZZ_SEED === "random"
    ? randomInt(1, 2 ** 31)
    : Number(process.env.FUZZ_SEED ?? 20261201) >>> 0;
const COUNT = Number(process.env.FUZZ_COUNT ?? 1000);
const ONLY = process.env.FUZZ_ONLY?.split(",").map((n) => Number(n.trim()));
/** Objects per association; a C-ECHO (in a new association) follows each batch. */
const BATCH = 100;
/** The longest the listener may take to answer one object. */
const TIMEOUT_MS = Number(process.env.FUZZ_TIMEOUT_MS ?? 15_000);
const MAX_RSS_GROWTH_MIB = Number(process.env.FUZZ_MAX_RSS_GROWTH_MB ?? 300);
/** Stored files DCMTK reads in full (besides every one dicom-parser could not read). */
const DCMDUMP_SAMPLE = 30;
const EXAMPLES = 8;

const REPORT = join(REPO_ROOT, "var", "fuzz-report.json");
const FAILURES_DIR = join(REPO_ROOT, "var", "fuzz-failures");

const mib = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;
const statusLabel = (s: number | null) =>
  s === null ? "none" : `0x${s.toString(16).toUpperCase().padStart(4, "0")}`;

interface Sent {
  object: FuzzObject;
  outcome: SendOutcome;
}

interface Example {
  object: number;
  base: string;
  transferSyntaxUid: string;
  status: string;
  errorComment?: string;
  mutations: string[];
  detail?: string;
  repro: string;
}

/** Objects that broke one rule, with a few examples. */
class Violations {
  readonly byRule = new Map<string, { count: number; examples: Example[] }>();
  private readonly seen = new Set<string>();
  add(rule: string, sent: Sent, detail?: string) {
    // An object counts once per rule, however many checks catch it.
    const key = `${rule}:${sent.object.index}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    const entry = this.byRule.get(rule) ?? { count: 0, examples: [] };
    entry.count += 1;
    if (entry.examples.length < EXAMPLES) {
      const o = sent.object;
      entry.examples.push({
        object: o.index,
        base: o.base,
        transferSyntaxUid: o.transferSyntaxUid,
        status: statusLabel(sent.outcome.status),
        ...(sent.outcome.errorComment ? { errorComment: sent.outcome.errorComment } : {}),
        mutations: o.mutations,
        ...(detail ? { detail } : {}),
        repro: `FUZZ_SEED=${SEED} FUZZ_ONLY=${o.index}`,
      });
    }
    this.byRule.set(rule, entry);
  }
  of(rule: string) {
    return this.byRule.get(rule) ?? { count: 0, examples: [] };
  }
}

/** dicom-parser throws `{ exception, dataSet }` objects as well as Errors and strings. */
function parserError(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === "object" && error && "exception" in error) {
    return String((error as { exception: unknown }).exception);
  }
  return String(error);
}

/** A Part 10 file of an object as it was sent (file meta from its command), for storescu. */
function part10(o: FuzzObject): Buffer {
  return Buffer.concat([
    encodeFileMetaInformation({
      mediaStorageSopClassUid: o.command.sopClassUid,
      mediaStorageSopInstanceUid: o.command.sopInstanceUid,
      transferSyntaxUid: o.transferSyntaxUid,
    }),
    o.dataset,
  ]);
}

describe("listener under fuzzed C-STOREs", () => {
  let h: Harness;
  let queue: Queue;
  let sandbox: string;
  let spoolDir: string;
  const violations = new Violations();
  const sent = new Map<number, Sent>();
  const echoes: { afterObjects: number; status: number | null; error?: string }[] = [];
  const memory = { beforeBytes: 0, peakBytes: 0, afterBytes: 0, samples: 0 };
  const stored = { knee: 0, notKnee: 0, dcmdumpChecked: 0, uniqueAcknowledgedUids: 0 };
  let validStudy: Record<string, unknown> = {};
  let report: Record<string, unknown> = {};
  let incomingLeft: string[] = [];
  let finalEcho = { dimse: null as number | null, echoscu: -1 };

  const sampleRss = () => {
    const rss = process.memoryUsage().rss;
    memory.samples += 1;
    if (rss > memory.peakBytes) memory.peakBytes = rss;
    return rss;
  };

  beforeAll(async () => {
    const started = Date.now();
    // Hostile UIDs may become paths (one `..` hop per UID at most): SPOOL_DIR sits four levels
    // down a sandbox, so whatever escapes the spool still lands in the sandbox and is removed.
    sandbox = await mkdtemp(join(tmpdir(), "kneegrade-fuzz-"));
    spoolDir = join(sandbox, "a", "b", "c", "spool");
    // testConfig makes a temporary spool of its own even when SPOOL_DIR is given: in the sandbox.
    const tmp = process.env.TMPDIR;
    process.env.TMPDIR = sandbox;
    try {
      h = await startHarness({ SPOOL_DIR: spoolDir, STUDY_STABLE_SECONDS: "1" });
    } finally {
      if (tmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = tmp;
    }
    queue = createQueue(QUEUES.gradeStudy, h.config);
    await rm(FAILURES_DIR, { recursive: true, force: true });

    const bases = await buildBases(await mkdtemp(join(sandbox, "bases-")));
    const pools = uidPools(SEED);
    const indexes = ONLY ?? Array.from({ length: COUNT }, (_, i) => i);
    const objects = indexes.map((i) => generateObject(SEED, i, bases, pools));
    const byIndex = new Map(objects.map((o) => [o.index, o]));
    const peer = { port: h.listener.port, calledAet: h.config.LISTENER_AET, callingAet: "FUZZER" };
    console.log(`fuzz: seed ${SEED}, ${objects.length} objects (FUZZ_SEED=${SEED} to repeat)`);

    memory.beforeBytes = sampleRss();
    memory.peakBytes = memory.beforeBytes;
    const sendStarted = Date.now();
    let associations = 0;
    const endedEarly: string[] = [];
    for (let at = 0; at < objects.length; at += BATCH) {
      const batch = objects.slice(at, at + BATCH);
      const r = await sendObjects(peer, batch, TIMEOUT_MS, (outcome) => {
        sampleRss();
        sent.set(outcome.index, { object: byIndex.get(outcome.index)!, outcome });
      });
      associations += r.associations;
      endedEarly.push(...r.endedEarly);
      const echo = await cEcho({ ...peer, host: "127.0.0.1", timeoutMs: 10_000 });
      echoes.push({ afterObjects: at + batch.length, status: echo.status, error: echo.error });
    }
    const sendMs = Date.now() - sendStarted;
    memory.afterBytes = sampleRss();
    const echoAfter = await cEcho({ ...peer, host: "127.0.0.1", timeoutMs: 10_000 });
    finalEcho = { dimse: echoAfter.status, echoscu: (await echoscu(h.target)).code };

    // --- What came back.
    const all = objects.map(
      (o) =>
        sent.get(o.index) ?? {
          object: o,
          outcome: { index: o.index, status: null, error: "never sent", latencyMs: 0 },
        },
    );
    const statuses: Record<string, number> = {
      "0x0000": 0,
      "0xA700": 0,
      "0xA900": 0,
      "0xC000": 0,
      other: 0,
      none: 0,
    };
    const byKind: Record<string, Record<string, number>> = {};
    for (const s of all) {
      const label = statusLabel(s.outcome.status);
      statuses[label in statuses ? label : "other"]! += 1;
      for (const kind of new Set(s.object.kinds)) {
        byKind[kind] ??= {};
        byKind[kind][label] = (byKind[kind][label] ?? 0) + 1;
      }
      if (s.outcome.status === null) violations.add("no-response", s, s.outcome.error);
      if (s.object.flags.includes("control") && s.outcome.status !== 0) {
        violations.add("control-not-stored", s, statusLabel(s.outcome.status));
      }
      if (s.outcome.status === 0 && s.object.flags.includes("command-mismatch")) {
        violations.add("acknowledged-command-mismatch", s);
      }
      if (s.outcome.status === 0 && s.object.flags.includes("encapsulated-under-native")) {
        violations.add("acknowledged-encapsulated-under-native", s);
      }
    }

    // --- Every acknowledged object: recorded, inside the spool, as sent, readable.
    incomingLeft = await readdir(join(spoolDir, ".incoming")).catch(() => []);
    const lastAck = new Map<string, Sent>();
    for (const s of all)
      if (s.outcome.status === 0) lastAck.set(s.object.command.sopInstanceUid, s);
    stored.uniqueAcknowledgedUids = lastAck.size;
    const rows = await h.db.instance.findMany({
      where: { sopInstanceUid: { in: [...lastAck.keys()] } },
      include: {
        study: { select: { studyInstanceUid: true } },
        series: { select: { seriesInstanceUid: true } },
      },
    });
    const rowByUid = new Map(rows.map((r) => [r.sopInstanceUid, r]));
    const spoolRoot = resolve(spoolDir);
    const toDump: { path: string; s: Sent }[] = [];
    const unparsed: { path: string; s: Sent }[] = [];
    for (const [uid, s] of lastAck) {
      const row = rowByUid.get(uid);
      if (!row) {
        violations.add(
          "acknowledged-not-recorded",
          s,
          `no Instance row for ${JSON.stringify(uid)}`,
        );
        continue;
      }
      for (const [what, value] of [
        ["StudyInstanceUID", row.study.studyInstanceUid],
        ["SeriesInstanceUID", row.series.seriesInstanceUid],
        ["SOPInstanceUID", row.sopInstanceUid],
        ["SOPClassUID", row.sopClassUid],
      ] as const) {
        if (!isValidUid(value)) {
          violations.add("acknowledged-invalid-uid", s, `${what} ${JSON.stringify(value)}`);
        }
      }
      if (row.transferSyntaxUid !== s.object.transferSyntaxUid) {
        violations.add(
          "recorded-wrong-transfer-syntax",
          s,
          `negotiated ${s.object.transferSyntaxUid}, recorded ${row.transferSyntaxUid}`,
        );
      }
      if (row.routing !== "KNEE") {
        stored.notKnee += 1;
        continue;
      }
      stored.knee += 1;
      if (!row.spoolPath) {
        violations.add("acknowledged-not-readable", s, "KNEE instance without a spool path");
        continue;
      }
      const path = resolve(row.spoolPath);
      const parts = relative(spoolRoot, path).split(sep);
      if (
        !path.startsWith(spoolRoot + sep) ||
        parts.length !== 3 ||
        parts[0] === ".incoming" ||
        parts.some((p) => p === "" || p === "." || p === "..")
      ) {
        violations.add(
          "spool-path-outside-spool-dir",
          s,
          `spoolPath ${JSON.stringify(row.spoolPath)}`,
        );
      }
      let file: Buffer;
      try {
        file = await readFile(path);
      } catch (error) {
        violations.add("acknowledged-not-readable", s, `cannot read the spool file: ${error}`);
        continue;
      }
      if (instanceDigest(file) !== row.digest) {
        violations.add("acknowledged-not-readable", s, "spool file differs from its digest");
      }
      const groupLength = file.length >= 144 ? file.readUInt32LE(140) : 0;
      if (!file.subarray(144 + groupLength).equals(s.object.dataset)) {
        violations.add("acknowledged-not-readable", s, "stored data set differs from the one sent");
      }
      try {
        const ds = dicomParser.parseDicom(new Uint8Array(file));
        const pixels = ds.elements.x7fe00010;
        if (pixels?.hadUndefinedLength && NATIVE_SYNTAXES.includes(s.object.transferSyntaxUid)) {
          violations.add("acknowledged-encapsulated-under-native", s, "found in the spool file");
        }
        toDump.push({ path, s });
      } catch (error) {
        violations.add("acknowledged-not-readable", s, `dicom-parser: ${parserError(error)}`);
        unparsed.push({ path, s });
      }
    }
    // DCMTK reads a sample in full, and every file dicom-parser could not read.
    const pick = new Rng(SEED);
    const sample = [...unparsed.slice(0, 10)];
    while (sample.length < unparsed.slice(0, 10).length + DCMDUMP_SAMPLE && toDump.length > 0) {
      sample.push(toDump.splice(pick.int(toDump.length), 1)[0]!);
    }
    for (const { path, s } of sample) {
      const dump = await tool("dcmdump", ["-q", path]);
      stored.dcmdumpChecked += 1;
      if (dump.code !== 0) {
        violations.add("dcmdump-cannot-read", s, dump.stderr.trim().split("\n")[0]);
      }
    }

    // --- A valid study after all that: stored and queued, with its job in Redis.
    const validStarted = Date.now();
    try {
      const study = await buildStudy({ dir: join(sandbox, "valid"), sources: ["RG3_UNC.dcm"] });
      const [send] = await sendStudy(h.target, study);
      validStudy = { studyInstanceUid: study.studyInstanceUid, storescuExit: send?.code };
      const queued = await waitFor(
        async () => {
          const row = await h.db.study.findUnique({
            where: { studyInstanceUid: study.studyInstanceUid },
            include: { jobs: true },
          });
          return row?.status === "QUEUED" && row.jobs[0]?.enqueuedAt ? row : undefined;
        },
        60_000,
        "the valid study to be queued",
      ).catch(() => undefined);
      const row = await h.db.study.findUnique({
        where: { studyInstanceUid: study.studyInstanceUid },
        include: { jobs: true },
      });
      const jobId = row?.jobs[0]?.jobId;
      const job = jobId ? await queue.getJob(jobId) : undefined;
      validStudy = {
        ...validStudy,
        status: row?.status ?? "not recorded",
        instances: await h.db.instance.count({ where: { studyId: row?.id ?? "" } }).catch(() => 0),
        queued: queued !== undefined,
        jobId: jobId ?? null,
        jobInRedis: job !== undefined,
        waitedMs: Date.now() - validStarted,
      };
      if (!queued) {
        // Evidence: what the outbox and the assembler are stuck on.
        const pending = await h.db.gradingJob.findMany({
          where: { enqueuedAt: null },
          orderBy: { createdAt: "asc" },
          include: { study: { select: { studyInstanceUid: true } } },
          take: 5,
        });
        validStudy.outboxPending = await h.db.gradingJob.count({ where: { enqueuedAt: null } });
        validStudy.oldestOutboxStudies = pending.map((j) => j.study.studyInstanceUid);
        const stuck = await h.db.study.findMany({
          where: { status: "RECEIVING", lastReceivedAt: { lt: new Date(Date.now() - 5_000) } },
          orderBy: { lastReceivedAt: "asc" },
          select: { studyInstanceUid: true, lastReceivedAt: true },
          take: 5,
        });
        validStudy.stuckReceivingStudies = await h.db.study.count({
          where: { status: "RECEIVING", lastReceivedAt: { lt: new Date(Date.now() - 5_000) } },
        });
        validStudy.oldestStuck = stuck.map((s) => s.studyInstanceUid);
      }
    } catch (error) {
      validStudy = { ...validStudy, error: String(error) };
    }

    // --- The figures.
    const latencies = all.map((s) => s.outcome.latencyMs).sort((a, b) => a - b);
    report = {
      date: new Date().toISOString(),
      seed: SEED,
      objects: objects.length,
      only: ONLY ?? null,
      statuses,
      byMutation: Object.fromEntries(
        MUTATION_KINDS.filter((k) => byKind[k]).map((k) => [k, byKind[k]]),
      ),
      associations,
      associationsEndedEarly: endedEarly.length,
      echoes: {
        every: BATCH,
        ok: echoes.filter((e) => e.status === 0).length,
        failed: echoes.filter((e) => e.status !== 0),
        after: finalEcho,
      },
      memoryMiB: {
        before: mib(memory.beforeBytes),
        peak: mib(memory.peakBytes),
        after: mib(memory.afterBytes),
        peakGrowth: mib(memory.peakBytes - memory.beforeBytes),
        samples: memory.samples,
      },
      latencyMs: {
        median: latencies[Math.floor(latencies.length / 2)] ?? 0,
        p99: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
        max: latencies[latencies.length - 1] ?? 0,
      },
      stored,
      incomingLeft: incomingLeft.length,
      validStudy,
      violations: Object.fromEntries(violations.byRule),
      durationMs: { send: sendMs, total: Date.now() - started },
    };
    await mkdir(FAILURES_DIR, { recursive: true });
    for (const { examples } of violations.byRule.values()) {
      for (const e of examples) {
        const o = byIndex.get(e.object)!;
        await writeFile(join(FAILURES_DIR, `${SEED}-${o.index}.dcm`), part10(o));
      }
    }
    await writeFile(REPORT, `${JSON.stringify(report, null, 2)}\n`);
    console.log(JSON.stringify(report));
  }, 900_000);

  afterAll(async () => {
    await queue?.close();
    await h?.stop();
    if (sandbox) await rm(sandbox, { recursive: true, force: true });
  });

  /** Fails with the count and a few examples (object number, mutations, how to rebuild it). */
  const expectNone = (rule: string) => {
    const { count, examples } = violations.of(rule);
    expect({ rule, count, examples }).toEqual({ rule, count: 0, examples: [] });
  };

  it("answers every object with a DIMSE status", () => {
    expectNone("no-response");
    expect(sent.size).toBe(ONLY?.length ?? COUNT);
  });

  it("keeps answering C-ECHO, during the run and after it", () => {
    expect(echoes.filter((e) => e.status !== 0)).toEqual([]);
    expect(finalEcho).toEqual({ dimse: 0, echoscu: 0 });
  });

  it("keeps its memory bounded", () => {
    expect(memory.samples).toBeGreaterThanOrEqual(sent.size);
    expect(mib(memory.peakBytes - memory.beforeBytes)).toBeLessThan(MAX_RSS_GROWTH_MIB);
  });

  it("leaves no half-received file behind", () => {
    expect(incomingLeft).toEqual([]);
  });

  // Each promise and the violations that would break it.
  it.each([
    ["stores every unmutated object", ["control-not-stored"]],
    [
      "refuses an object whose command UIDs differ from its data set",
      ["acknowledged-command-mismatch"],
    ],
    [
      "records every acknowledged object, readable and byte for byte as sent",
      ["acknowledged-not-recorded", "acknowledged-not-readable", "dcmdump-cannot-read"],
    ],
    [
      "keeps every acknowledged object under SPOOL_DIR as <study>/<series>/<sop>.dcm",
      ["spool-path-outside-spool-dir"],
    ],
    ["acknowledges only objects whose UIDs are DICOM UIDs", ["acknowledged-invalid-uid"]],
    [
      "refuses encapsulated pixel data under a native transfer syntax",
      ["acknowledged-encapsulated-under-native"],
    ],
    [
      "records the negotiated transfer syntax, whatever the data set says",
      ["recorded-wrong-transfer-syntax"],
    ],
  ])("%s", (_promise, rules) => {
    for (const rule of rules) expectNone(rule);
  });

  it("still stores and queues a valid study after the fuzzing", () => {
    expect(validStudy).toMatchObject({
      storescuExit: 0,
      status: "QUEUED",
      queued: true,
      jobInRedis: true,
    });
  });
});
