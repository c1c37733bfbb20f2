/**
 * Hostile and broken objects, and a queue that loses its jobs. Real peers only: DCMTK and a raw PDU sender (tests/helpers/raw-scu.ts) as the modality or
 * the attacker, the local PostgreSQL and Redis, an in-process listener.
 */
import { readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { GradeStudyJob, QUEUES, studyRevisionJobId } from "@kneegrade/contracts";
import { enqueuePendingJobs, reconcileGradingJobs } from "@kneegrade/listener";
import { createQueue, redisConnection } from "@kneegrade/queue";
import { type Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectStatus } from "../../packages/cli/src/status.ts";
import { tool } from "../helpers/dcmtk.ts";
import { cleanupConfig, type Harness, sendStudy, startHarness, waitFor } from "../helpers/env.ts";
import { WG04_DIR } from "../helpers/paths.ts";
import { datasetOf, EXPLICIT_LE, rawStore } from "../helpers/raw-scu.ts";
import { buildStudy, newUid } from "../helpers/studies.ts";

const work = join(tmpdir(), `kneegrade-hardening-${process.pid}`);
const CR = "1.2.840.10008.5.1.4.1.1.1";
const JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70";
const J2K_LOSSLESS = "1.2.840.10008.1.2.4.90";

/** Every file under `dir`, recursively. */
async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

/** A copy of a WG04 file with new UIDs and `edits` (dcmodify -m/-i arguments) applied. */
/**
 * RG3_UNC.dcm with a new SOP Instance UID and the attributes in `edits` ("gggg,eeee" → value)
 * changed by dcmodify.
 */
async function variant(
  name: string,
  edits: Record<string, string>,
): Promise<{ path: string; sop: string }> {
  const study = await buildStudy({ dir: join(work, name), sources: ["RG3_UNC.dcm"] });
  const path = study.instances[0]!.path;
  const sop = newUid();
  const all = { ...edits, "0008,0018": sop };
  const args = Object.entries(all).flatMap(([tag, value]) => ["-m", `(${tag})=${value}`]);
  const r = await tool("dcmodify", ["-nb", ...args, path]);
  if (r.code !== 0) throw new Error(`dcmodify: ${r.stderr}`);
  return { path, sop };
}

describe("hardening: hostile objects (listener)", () => {
  let h: Harness;
  let queue: Queue;

  beforeAll(async () => {
    h = await startHarness({ STUDY_STABLE_SECONDS: "1", MAX_IMAGE_DIMENSION: "4096" });
    queue = createQueue(QUEUES.gradeStudy, h.config);
  });
  afterAll(async () => {
    await queue.close();
    await h.stop();
  });

  const store = (file: Buffer, transferSyntax: string, sopInstanceUid: string) =>
    rawStore({
      port: h.target.port,
      calledAet: h.config.LISTENER_AET,
      sopClassUid: CR,
      transferSyntax,
      objects: [{ sopInstanceUid, dataset: datasetOf(file) }],
    });

  it("refuses UIDs that would leave the spool (path traversal) and writes nothing outside it", async () => {
    const { path, sop } = await variant("traversal", {
      "0020,000D": "../pwned",
      "0020,000E": "..",
    });
    const r = await store(await readFile(path), EXPLICIT_LE, sop);
    expect(r.accepted).toBe(true);
    expect(r.statuses).toEqual([0xa900]);
    const spool = h.config.SPOOL_DIR;
    expect((await walk(spool)).filter((f) => f.endsWith(".dcm"))).toEqual([]);
    // Nothing named after the hostile UID anywhere beside or above the spool.
    expect(await readdir(dirname(spool))).not.toContain("pwned");
    expect(await h.db.instance.count({ where: { sopInstanceUid: sop } })).toBe(0);
    // The audit row is written beside the answer, not before it.
    const audit = await waitFor(
      async () =>
        (await h.db.auditEvent.findFirst({
          where: { event: "instance.refused", sopInstanceUid: sop },
        })) ?? undefined,
    );
    expect(audit?.details).toMatchObject({ code: "INVALID_OBJECT", status: 0xa900 });
  });

  it("refuses a StudyInstanceUID with a letter, and queues a valid study sent after it", async () => {
    const { path, sop } = await variant("letter", { "0020,000D": "1.2.3.x" });
    expect((await store(await readFile(path), EXPLICIT_LE, sop)).statuses).toEqual([0xa900]);
    for (const bad of ["1.2..3", "01.2.3", `1.${"2".repeat(64)}`]) {
      const { path: p, sop: s } = await variant(`bad-${bad.length}`, { "0020,000D": bad });
      expect((await store(await readFile(p), EXPLICIT_LE, s)).statuses, bad).toEqual([0xa900]);
    }
    const good = await buildStudy({ dir: join(work, "good"), sources: ["RG3_UNC.dcm"] });
    for (const res of await sendStudy(h.target, good)) {
      expect(res.code, res.stderr).toBe(0);
    }
    const job = await waitFor(async () => {
      const j = await h.db.gradingJob.findFirst({
        where: { study: { studyInstanceUid: good.studyInstanceUid }, enqueuedAt: { not: null } },
      });
      return j ?? undefined;
    });
    expect(await queue.getJob(job.jobId)).toBeTruthy();
  });

  it("refuses pixel data whose encoding contradicts the transfer syntax (0xC000)", async () => {
    const jpll = await readFile(join(WG04_DIR, "RG3_JPLL.dcm"));
    const unc = await readFile(join(WG04_DIR, "RG3_UNC.dcm"));
    const uidOf = async (name: string) =>
      (await tool("dcmdump", ["-q", "+P", "0008,0018", join(WG04_DIR, name)])).stdout.match(
        /\[([0-9.]+)\]/,
      )![1]!;
    // Compressed (encapsulated) pixel data announced as explicit VR little endian, and native
    // pixel data announced as JPEG 2000: both refused, nothing kept.
    expect((await store(jpll, EXPLICIT_LE, await uidOf("RG3_JPLL.dcm"))).statuses).toEqual([
      0xc000,
    ]);
    expect((await store(unc, J2K_LOSSLESS, await uidOf("RG3_UNC.dcm"))).statuses).toEqual([0xc000]);
    // The same bytes under their own syntaxes are stored: the sender is not the problem.
    expect((await store(jpll, JPEG_LOSSLESS_SV1, await uidOf("RG3_JPLL.dcm"))).statuses).toEqual([
      0,
    ]);
    expect((await store(unc, EXPLICIT_LE, await uidOf("RG3_UNC.dcm"))).statuses).toEqual([0]);
    const mismatches = () =>
      h.db.auditEvent.count({
        where: {
          event: "instance.refused",
          details: { path: ["code"], equals: "ENCODING_MISMATCH" },
        },
      });
    await waitFor(async () => ((await mismatches()) >= 2 ? true : undefined));
    expect(await mismatches()).toBe(2);
  });

  it("refuses images beyond MAX_IMAGE_DIMENSION", async () => {
    const { path, sop } = await variant("huge", { "0028,0010": "65535", "0028,0011": "65535" });
    expect((await store(await readFile(path), EXPLICIT_LE, sop)).statuses).toEqual([0xa900]);
    // The audit row is written beside the answer, not before it.
    const audit = await waitFor(
      async () =>
        (await h.db.auditEvent.findFirst({
          where: { event: "instance.refused", sopInstanceUid: sop },
        })) ?? undefined,
    );
    expect(audit?.details).toMatchObject({ code: "BAD_DIMENSIONS" });
  });
});

describe("hardening: the outbox and the reconciler (database is the truth)", () => {
  let h: Harness;
  let queue: Queue;

  beforeAll(async () => {
    h = await startHarness({ STUDY_STABLE_SECONDS: "1" });
    // The listener's own assembler would race the calls below: stop it, keep the SCP.
    await h.listener.close();
    queue = createQueue(QUEUES.gradeStudy, h.config);
  });
  afterAll(async () => {
    await queue.close();
    await h.db.$disconnect();
    await cleanupConfig(h.config);
  });

  /** A study and its recorded (not yet enqueued) grading job, written as the assembler does. */
  async function recordedJob(studyInstanceUid: string, status: "QUEUED" | "ACTIVE" = "QUEUED") {
    const study = await h.db.study.create({
      data: { studyInstanceUid, status: status === "QUEUED" ? "QUEUED" : "GRADING" },
    });
    return h.db.gradingJob.create({
      data: {
        jobId: studyRevisionJobId(QUEUES.gradeStudy, studyInstanceUid, 1),
        queue: QUEUES.gradeStudy,
        studyId: study.id,
        revision: 1,
        status,
      },
    });
  }

  it("marks a row that cannot become a job FAILED, and queues the rows after it", async () => {
    // A row written before UIDs were checked on the way in (or by any other path).
    const bad = await recordedJob("1.2.3.x");
    const good = await recordedJob(newUid());
    expect(await enqueuePendingJobs(h.db, queue)).toBe(1);
    const badRow = await h.db.gradingJob.findUniqueOrThrow({ where: { id: bad.id } });
    expect(badRow).toMatchObject({ status: "FAILED", errorCode: "INVALID_JOB", enqueuedAt: null });
    expect(badRow.errorMessage).toContain("must be a DICOM UID");
    const badStudy = await h.db.study.findUniqueOrThrow({ where: { id: bad.studyId } });
    expect(badStudy.status).toBe("FAILED");
    expect(await queue.getJob(good.jobId)).toBeTruthy();
    // The next pass does not trip over it again.
    expect(await enqueuePendingJobs(h.db, queue)).toBe(0);
    const status = await collectStatus(h.db, h.config);
    expect(status.warnings.join("\n")).toContain("could not be queued (INVALID_JOB)");
  });

  it("adds jobs lost from Redis again under the same id, once; status warns until then", async () => {
    const row = await recordedJob(newUid());
    expect(await enqueuePendingJobs(h.db, queue)).toBeGreaterThanOrEqual(1);
    expect(await queue.getJob(row.jobId)).toBeTruthy();
    // Redis loses its data (restart without persistence, failover, FLUSHALL): only our prefix here.
    const redis = new Redis(h.config.REDIS_URL);
    const keys = await redis.keys(`${h.config.QUEUE_PREFIX}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
    expect(await queue.getJob(row.jobId)).toBeFalsy();

    const before = await collectStatus(h.db, h.config);
    expect(before.warnings.join("\n")).toMatch(
      /PostgreSQL has \d+ grading job\(s\).*Redis holds 0/,
    );

    const result = await reconcileGradingJobs(h.db, queue, undefined, { graceMs: 0 });
    expect(result.requeued).toContain(row.jobId);
    const job = await queue.getJob(row.jobId);
    expect(GradeStudyJob.parse(job?.data)).toMatchObject({ studyId: row.studyId, revision: 1 });
    // Idempotent: a second pass finds every job in place and adds nothing.
    expect((await reconcileGradingJobs(h.db, queue, undefined, { graceMs: 0 })).requeued).toEqual(
      [],
    );
    expect(await queue.getJobCountByTypes("waiting")).toBeGreaterThanOrEqual(1);
    const after = await collectStatus(h.db, h.config);
    expect(after.warnings.join("\n")).not.toMatch(/Redis holds/);
    expect(
      await h.db.auditEvent.count({ where: { event: "job.requeued" } }),
    ).toBeGreaterThanOrEqual(1);
  });

  it("records a failure that Redis holds but PostgreSQL missed (no study stays GRADING)", async () => {
    const row = await recordedJob(newUid(), "ACTIVE");
    await h.db.gradingJob.update({ where: { id: row.id }, data: { enqueuedAt: new Date(0) } });
    const study = await h.db.study.findUniqueOrThrow({ where: { id: row.studyId } });
    await queue.add(
      QUEUES.gradeStudy,
      {
        schemaVersion: 1,
        studyId: row.studyId,
        studyInstanceUid: study.studyInstanceUid,
        revision: 1,
      },
      { jobId: row.jobId, attempts: 1 },
    );
    // A worker whose failure record never reached PostgreSQL (it was down at that moment).
    const worker = new Worker(
      QUEUES.gradeStudy,
      async () => {
        throw new Error("decoder crashed");
      },
      { connection: redisConnection(h.config.REDIS_URL), prefix: h.config.QUEUE_PREFIX },
    );
    await waitFor(async () =>
      (await (await queue.getJob(row.jobId))?.getState()) === "failed" ? true : undefined,
    );
    await worker.close();
    const result = await reconcileGradingJobs(h.db, queue, undefined, { graceMs: 0 });
    expect(result.failed).toContain(row.jobId);
    const after = await h.db.gradingJob.findUniqueOrThrow({ where: { id: row.id } });
    expect(after).toMatchObject({ status: "FAILED", errorCode: "RETRIES_EXHAUSTED" });
    expect(after.errorMessage).toContain("decoder crashed");
    expect((await h.db.study.findUniqueOrThrow({ where: { id: row.studyId } })).status).toBe(
      "FAILED",
    );
  });
});

describe("hardening: refusals cannot grow the audit table without bound", () => {
  it("audits at most AUDIT_REFUSALS_PER_MINUTE refusals per peer, then one summary", async () => {
    const h = await startHarness({ AUDIT_REFUSALS_PER_MINUTE: "5" });
    try {
      const { path } = await variant("flood", { "0020,000D": "1.2.3.x" });
      const dataset = datasetOf(await readFile(path));
      const objects = Array.from({ length: 20 }, () => ({ sopInstanceUid: newUid(), dataset }));
      const r = await rawStore({
        port: h.target.port,
        calledAet: h.config.LISTENER_AET,
        sopClassUid: CR,
        transferSyntax: EXPLICIT_LE,
        objects,
      });
      // Every object still gets its answer...
      expect(r.statuses).toEqual(objects.map(() => 0xa900));
      await new Promise((res) => setTimeout(res, 300));
      // ...but only five rows are written, and the listener's stop writes the summary.
      expect(await h.db.auditEvent.count({ where: { event: "instance.refused" } })).toBe(5);
      await h.listener.close();
      const summary = await h.db.auditEvent.findFirst({ where: { event: "audit.suppressed" } });
      expect(summary?.details).toMatchObject({ suppressed: 15, written: 5 });
    } finally {
      await h.db.$disconnect();
      await cleanupConfig(h.config);
    }
  });
});
