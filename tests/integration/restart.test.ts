/**
 * Crash safety of ingest, with the real CLI as a child process: a listener killed (SIGKILL) in the
 * middle of a study and restarted still queues that study exactly once; `kneegrade status --json`
 * shows it so.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QUEUES } from "@kneegrade/contracts";
import { createDb, type Db } from "@kneegrade/db";
import { createQueue } from "@kneegrade/queue";
import { afterAll, beforeAll, expect, it } from "vitest";
import { configEnv, freePort, kill, runCli, startServe } from "../helpers/cli.ts";
import { echoscu, storescu } from "../helpers/dcmtk.ts";
import { cleanupConfig, resetDb, testConfig, waitFor } from "../helpers/env.ts";
import { buildStudy } from "../helpers/studies.ts";

let db: Db;
let env: Record<string, string>;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  const config = await testConfig({
    LISTENER_PORT: String(await freePort()),
    // Longer than a listener restart takes on a busy 2-core machine (tsx start-up included).
    STUDY_STABLE_SECONDS: "8",
  });
  env = configEnv(config);
  db = createDb(config.DATABASE_URL);
  await resetDb(db);
  cleanup = async () => {
    await db.$disconnect();
    await cleanupConfig(config);
  };
});
afterAll(() => cleanup());

it("queues a study once although the listener was killed twice while receiving it", async () => {
  const study = await buildStudy({
    dir: join(tmpdir(), `kneegrade-restart-${process.pid}`),
    sources: ["RG3_UNC.dcm", "RG3_JPLL.dcm"],
  });
  const target = { port: Number(env.LISTENER_PORT) };
  const [a, b] = study.instances.map((i) => i.path) as [string, string];

  const logs: (() => string)[] = [];
  let serve = await startServe(env, ["--only", "listener"]);
  logs.push(serve.output);
  expect((await storescu(target, [a])).code).toBe(0);
  await kill(serve.child);

  serve = await startServe(env, ["--only", "listener"]);
  logs.push(serve.output);
  expect((await storescu(target, [b], ["-xs"])).code).toBe(0);
  await kill(serve.child); // killed again, before the study became stable

  serve = await startServe(env, ["--only", "listener"]);
  logs.push(serve.output);
  try {
    expect((await echoscu(target)).code).toBe(0);
    await waitFor(async () => {
      const s = await db.study.findUnique({ where: { studyInstanceUid: study.studyInstanceUid } });
      return s?.status === "QUEUED" ? s : undefined;
    });
    // Resending after the crash changes nothing; a new instance would be revision 2.
    expect((await storescu(target, [a])).code).toBe(0);
    expect((await storescu(target, [b], ["-xs"])).code).toBe(0);
    await new Promise((r) => setTimeout(r, 9_000)); // longer than STUDY_STABLE_SECONDS

    const jobs = await db.gradingJob.findMany({
      where: { study: { studyInstanceUid: study.studyInstanceUid } },
    });
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.enqueuedAt).not.toBeNull();
    const instances = await db.instance.count({
      where: { study: { studyInstanceUid: study.studyInstanceUid } },
    });
    expect(instances).toBe(2);

    const status = await runCli(["status", "--json"], env);
    expect(status.code, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout);
    expect(report.schemaVersion).toBe(1);
    expect(report.studies.byStatus).toEqual({ QUEUED: 1 });
    expect(report.instances).toMatchObject({ received: 2, knee: 2, notKnee: 0, resent: 2 });
    expect(report.queues[QUEUES.gradeStudy]).toMatchObject({ waiting: 1, active: 0, failed: 0 });
    expect(report.jobs.byStatus).toEqual({ QUEUED: 1 });
    const listed = report.recentStudies.find(
      (s: { studyInstanceUid: string }) => s.studyInstanceUid === study.studyInstanceUid,
    );
    expect(listed).toMatchObject({ status: "QUEUED", revision: 1, kneeInstances: 2 });
    expect(listed.jobs).toHaveLength(1);
  } finally {
    await kill(serve.child, "SIGTERM");
  }
  // Structured logs, and no patient data in them: the WG04 object's patient name, ID, birth date
  // and accession number never appear, its UIDs do.
  const output = logs.map((l) => l()).join("");
  expect(output).toContain('"event":"instance.stored"');
  expect(output).toContain(study.studyInstanceUid);
  for (const phi of ["CompressedSamples", "11RG3", "19790408", "FUJI95706"]) {
    expect(output).not.toContain(phi);
  }
  const queue = createQueue(QUEUES.gradeStudy, {
    REDIS_URL: env.REDIS_URL!,
    QUEUE_PREFIX: env.QUEUE_PREFIX!,
  });
  expect(await queue.getJobCountByTypes("waiting", "active", "completed", "failed")).toBe(1);
  await queue.close();
});
