/**
 * The listener against real peers: DCMTK as the modality, the local PostgreSQL and Redis.
 * Test studies are built from ../shared/data/dicom/wg04 (NEMA WG04, a real CR radiograph).
 */
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QUEUES } from "@kneegrade/contracts";
import { createDb } from "@kneegrade/db";
import { instanceDigest, legacyInstanceDigest } from "@kneegrade/dicom";
import { startListener } from "@kneegrade/listener";
import { createLogger } from "@kneegrade/log";
import { createQueue } from "@kneegrade/queue";
import type { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dumpValue, echoscu, storescu, tool } from "../helpers/dcmtk.ts";
import {
  cleanupConfig,
  type Harness,
  sendStudy,
  startHarness,
  testConfig,
  waitFor,
} from "../helpers/env.ts";
import { WG04_FILES, type Wg04File } from "../helpers/paths.ts";
import { startCuttingProxy, startStallingProxy } from "../helpers/proxy.ts";
import { buildStudy, datasetBytes, type TestStudy } from "../helpers/studies.ts";

const work = join(tmpdir(), `kneegrade-test-${process.pid}`);

describe("listener (DCMTK storescu/echoscu → kneegrade)", () => {
  let h: Harness;
  let queue: Queue;

  beforeAll(async () => {
    h = await startHarness({ STUDY_STABLE_SECONDS: "1" });
    queue = createQueue(QUEUES.gradeStudy, h.config);
  });
  afterAll(async () => {
    await queue.close();
    await h.stop();
  });

  const jobsOf = (studyInstanceUid: string) =>
    h.db.gradingJob.findMany({
      where: { study: { studyInstanceUid } },
      orderBy: { revision: "asc" },
    });
  const waitForStatus = (studyInstanceUid: string, status: string, revision = 1) =>
    waitFor(async () => {
      const s = await h.db.study.findUnique({ where: { studyInstanceUid } });
      return s?.status === status && s.revision === revision ? s : undefined;
    });

  it("answers C-ECHO", async () => {
    const r = await echoscu(h.target);
    expect(r.code, r.stderr).toBe(0);
  });

  let kneeStudy: TestStudy;
  const knee = { studyInstanceUid: "" };

  it("keeps every transfer syntax as sent, records each instance, and queues the study once", async () => {
    const sources = Object.keys(WG04_FILES) as Wg04File[];
    const study = await buildStudy({ dir: join(work, "knee"), sources });
    kneeStudy = study;
    knee.studyInstanceUid = study.studyInstanceUid;
    for (const r of await sendStudy(h.target, study)) expect(r.code, r.stderr).toBe(0);

    const rows = await h.db.instance.findMany({
      where: { study: { studyInstanceUid: study.studyInstanceUid } },
    });
    expect(rows).toHaveLength(sources.length);
    for (const sent of study.instances) {
      const row = rows.find((r) => r.sopInstanceUid === sent.sopInstanceUid);
      expect(row?.routing).toBe("KNEE");
      expect(row?.callingAet).toBe("MODALITY");
      const stored = await readFile(row!.spoolPath!);
      expect(instanceDigest(stored)).toBe(row!.digest);
      expect(Number(row!.sizeBytes)).toBe(stored.length);
      // No re-encoding on the way in: same transfer syntax, byte-identical data set.
      expect(row!.transferSyntaxUid).toBe(await dumpValue(sent.path, "0002,0010"));
      expect(datasetBytes(stored).equals(datasetBytes(await readFile(sent.path)))).toBe(true);
      const dump = await tool("dcmdump", ["-q", row!.spoolPath!]);
      expect(dump.code, dump.stderr).toBe(0);
    }

    await waitForStatus(study.studyInstanceUid, "QUEUED");
    const jobs = await jobsOf(study.studyInstanceUid);
    expect(jobs).toHaveLength(1);
    const queued = await waitFor(async () => (await queue.getJob(jobs[0]!.jobId)) ?? undefined);
    expect(queued.data).toMatchObject({
      schemaVersion: 1,
      studyInstanceUid: study.studyInstanceUid,
      revision: 1,
    });
    expect(await queue.getJobCountByTypes("waiting")).toBe(1);
  });

  it("treats a resent study as the same study: no second job", async () => {
    // The modality sends the same files again (one syntax per association, as the first time).
    for (const r of await sendStudy(h.target, kneeStudy)) expect(r.code, r.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 2_500)); // longer than STUDY_STABLE_SECONDS
    expect(await jobsOf(knee.studyInstanceUid)).toHaveLength(1);
    const study = await h.db.study.findUniqueOrThrow({
      where: { studyInstanceUid: knee.studyInstanceUid },
    });
    expect(study).toMatchObject({ status: "QUEUED", revision: 1 });
    const after = await h.db.instance.findMany({ where: { studyId: study.id } });
    expect(after).toHaveLength(kneeStudy.instances.length);
    expect(after.every((i) => i.duplicateCount === 1)).toBe(true);
    expect(await queue.getJobCountByTypes("waiting")).toBe(1);
  });

  it("counts a resend of objects recorded with SHA-256 by an earlier version as a resend", async () => {
    const study = await h.db.study.findUniqueOrThrow({
      where: { studyInstanceUid: knee.studyInstanceUid },
    });
    const rows = await h.db.instance.findMany({ where: { studyId: study.id } });
    for (const row of rows) {
      const digest = legacyInstanceDigest(await readFile(row.spoolPath!));
      await h.db.instance.update({ where: { id: row.id }, data: { digest } });
    }
    for (const r of await sendStudy(h.target, kneeStudy)) expect(r.code, r.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 2_500)); // longer than STUDY_STABLE_SECONDS
    expect(await jobsOf(knee.studyInstanceUid)).toHaveLength(1);
    const after = await h.db.instance.findMany({ where: { studyId: study.id } });
    expect(after.map((i) => i.duplicateCount)).toEqual(rows.map(() => 2));
    expect(after.every((i) => i.digest.startsWith("sha256:"))).toBe(true);
    expect(
      await h.db.study.findUniqueOrThrow({ where: { studyInstanceUid: knee.studyInstanceUid } }),
    ).toMatchObject({ status: "QUEUED", revision: 1 });
  });

  it("grades a late instance as one new revision", async () => {
    const late = await buildStudy({
      dir: join(work, "late"),
      sources: ["RG3_UNC.dcm"],
      studyInstanceUid: knee.studyInstanceUid,
    });
    const [r] = await sendStudy(h.target, late);
    expect(r!.code, r!.stderr).toBe(0);
    await waitForStatus(knee.studyInstanceUid, "QUEUED", 2);
    const jobs = await jobsOf(knee.studyInstanceUid);
    expect(jobs.map((j) => j.revision)).toEqual([1, 2]);
    await waitFor(async () =>
      (await queue.getJobCountByTypes("waiting")) === 2 ? true : undefined,
    );
    const lateRow = await h.db.instance.findUniqueOrThrow({
      where: { sopInstanceUid: late.instances[0]!.sopInstanceUid },
    });
    expect(lateRow.revision).toBe(2);
  });

  it("acknowledges a non-knee study but neither queues it nor keeps its pixel data", async () => {
    const chest = await buildStudy({
      dir: join(work, "chest"),
      sources: ["RG3_UNC.dcm", "RG3_RLE.dcm"],
      bodyPart: "CHEST",
    });
    for (const r of await sendStudy(h.target, chest)) expect(r.code, r.stderr).toBe(0);
    const study = await waitForStatus(chest.studyInstanceUid, "REFUSED");
    expect(study.statusReason).toContain("no knee rule matched");
    expect(await jobsOf(chest.studyInstanceUid)).toHaveLength(0);
    const rows = await h.db.instance.findMany({ where: { studyId: study.id } });
    expect(rows).toHaveLength(2);
    expect(rows.every((r) => r.routing === "NOT_KNEE" && r.spoolPath === null)).toBe(true);
    const spooled = await readdir(h.config.SPOOL_DIR);
    expect(spooled).not.toContain(chest.studyInstanceUid);
  });

  it("answers a malformed object with a failure status and goes on serving", async () => {
    const bad = await buildStudy({ dir: join(work, "bad"), sources: ["RG3_UNC.dcm"] });
    const path = bad.instances[0]!.path;
    expect((await tool("dcmodify", ["-nb", "-e", "(0020,000D)", path])).code).toBe(0);
    const r = await storescu(h.target, [path], ["-v"]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(
      /Received Store Response \(Error: DataSetDoesNotMatchSOPClass\)/,
    );
    expect(
      await h.db.instance.count({ where: { sopInstanceUid: bad.instances[0]!.sopInstanceUid } }),
    ).toBe(0);
    const audited = await waitFor(
      async () =>
        (await h.db.auditEvent.findFirst({
          where: { event: "instance.refused", sopInstanceUid: bad.instances[0]!.sopInstanceUid },
        })) ?? undefined,
    );
    expect(audited.details).toMatchObject({ code: "INVALID_OBJECT", status: 0xa900 });
    expect((await echoscu(h.target)).code).toBe(0);
  });

  it("drops a half-sent instance when the connection breaks, and keeps nothing of it", async () => {
    const cut = await buildStudy({ dir: join(work, "cut"), sources: ["RG3_UNC.dcm"] });
    const proxy = await startCuttingProxy(h.listener.port, 2_000_000);
    try {
      const r = await storescu({ ...h.target, port: proxy.port }, [cut.instances[0]!.path]);
      expect(r.code).not.toBe(0);
    } finally {
      await proxy.close();
    }
    await waitFor(async () =>
      (await readdir(join(h.config.SPOOL_DIR, ".incoming"))).length === 0 ? true : undefined,
    );
    expect(await h.db.study.count({ where: { studyInstanceUid: cut.studyInstanceUid } })).toBe(0);
    expect((await echoscu(h.target)).code).toBe(0);
  });
});

describe("listener policy", () => {
  it("rejects unknown calling and called AE titles at association time", async () => {
    const h = await startHarness({ ALLOWED_CALLING_AETS: "MODALITY, PACS" });
    try {
      expect((await echoscu(h.target)).code).toBe(0);
      const stranger = await echoscu({ ...h.target, callingAet: "STRANGER" });
      expect(stranger.code).not.toBe(0);
      expect(stranger.stderr).toMatch(/Association Rejected/i);
      expect(stranger.stderr).toMatch(/Calling AE Title Not Recognized/i);
      const wrongCalled = await echoscu({ ...h.target, calledAet: "SOMEONE" });
      expect(wrongCalled.stderr).toMatch(/Called AE Title Not Recognized/i);
      const study = await buildStudy({ dir: join(work, "stranger"), sources: ["RG3_UNC.dcm"] });
      const r = await storescu({ ...h.target, callingAet: "STRANGER" }, [study.instances[0]!.path]);
      expect(r.code).not.toBe(0);
      expect(await h.db.instance.count()).toBe(0);
      const rejected = await waitFor(async () => {
        const rows = await h.db.auditEvent.findMany({ where: { event: "association.rejected" } });
        return rows.length === 3 ? rows : undefined;
      });
      expect(rejected.map((r) => r.actor).sort()).toEqual(["MODALITY", "STRANGER", "STRANGER"]);
    } finally {
      await h.stop();
    }
  });

  it("refuses with 'out of resources' below the disk watermark or above the size limit", async () => {
    const study = await buildStudy({ dir: join(work, "limits"), sources: ["RG3_UNC.dcm"] });
    const cases: Record<string, string>[] = [
      { SPOOL_MIN_FREE_MB: "100000000" },
      { MAX_INSTANCE_MB: "1" },
    ];
    for (const limits of cases) {
      const h = await startHarness(limits);
      try {
        const r = await storescu(h.target, [study.instances[0]!.path], ["-v"]);
        expect(r.code, JSON.stringify(limits)).not.toBe(0);
        expect(r.stdout + r.stderr).toMatch(/Received Store Response \(Refused: OutOfResources\)/);
        expect(await h.db.instance.count()).toBe(0);
        expect(await readdir(join(h.config.SPOOL_DIR, ".incoming"))).toEqual([]);
      } finally {
        await h.stop();
      }
    }
  });

  it("rejects associations beyond MAX_ASSOCIATIONS, transiently, until a slot frees", async () => {
    const h = await startHarness({ MAX_ASSOCIATIONS: "1" });
    const proxy = await startStallingProxy(h.listener.port);
    // This association is accepted, then hangs: its C-ECHO never reaches the listener.
    const hanging = spawn("echoscu", ["-aec", "KNEEGRADE", "127.0.0.1", String(proxy.port)], {
      stdio: "ignore",
    });
    try {
      await proxy.answered(); // the hanging association holds the only slot from here on
      const refused = await echoscu(h.target);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/Association Rejected/i);
      expect(refused.stderr).toMatch(/Transient/i);
      expect(refused.stderr).toMatch(/Local Limit Exceeded/i);
    } finally {
      hanging.kill("SIGKILL");
      await proxy.close();
    }
    try {
      // The slot is given back when the hanging peer goes away.
      await waitFor(
        async () => ((await echoscu(h.target)).code === 0 ? true : undefined),
        15_000,
        "the slot to be given back",
      );
    } finally {
      await h.stop();
    }
  });

  it("accepts only the radiograph storage classes", async () => {
    const h = await startHarness();
    try {
      // An SR is not something kneegrade grades: its presentation context is rejected.
      const sr = await buildStudy({ dir: join(work, "sr"), sources: ["RG3_UNC.dcm"] });
      const path = sr.instances[0]!.path;
      await tool("dcmodify", ["-nb", "-m", "(0008,0016)=1.2.840.10008.5.1.4.1.1.2", path]);
      const r = await storescu(h.target, [path]);
      expect(r.code).not.toBe(0);
      expect(await h.db.instance.count()).toBe(0);
    } finally {
      await h.stop();
    }
  });
});

describe("listener without its database", () => {
  it("answers 'out of resources' and keeps nothing when PostgreSQL is unreachable", async () => {
    const config = await testConfig({
      DATABASE_URL: "postgresql://postgres@127.0.0.1:1/kneegrade",
    });
    const db = createDb(config.DATABASE_URL);
    const listener = await startListener(config, db, createLogger("test", "silent"));
    try {
      const study = await buildStudy({ dir: join(work, "nodb"), sources: ["RG3_UNC.dcm"] });
      const r = await storescu({ port: listener.port }, [study.instances[0]!.path], ["-v"]);
      expect(r.code).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/Received Store Response \(Refused: OutOfResources\)/);
      // Neither a half-written nor a committed file stays behind: the modality keeps the original.
      expect(await readdir(join(config.SPOOL_DIR, ".incoming"))).toEqual([]);
      expect(await readdir(config.SPOOL_DIR)).toEqual([".incoming"]);
      expect((await echoscu({ port: listener.port })).code).toBe(0);
    } finally {
      await listener.close();
      await db.$disconnect();
      await cleanupConfig(config);
    }
  });
});
