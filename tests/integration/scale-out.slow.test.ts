/**
 * Scale-out, proven on one machine: three worker processes (separate processes, separate working
 * directories, one shared spool) on one queue take 30 studies sent with storescu. Every study is
 * graded exactly once, the work is spread over the workers, and a worker killed (SIGKILL) in the
 * middle of its jobs loses nothing: another worker takes them once their lock lapses.
 */
import { mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QUEUES } from "@kneegrade/contracts";
import { createDb, type Db } from "@kneegrade/db";
import { createQueue } from "@kneegrade/queue";
import { testModel } from "@kneegrade/test-models";
import type { Job } from "bullmq";
import { afterAll, beforeAll, expect, it } from "vitest";
import { configEnv, kill } from "../helpers/cli.ts";
import { storescu } from "../helpers/dcmtk.ts";
import { cleanupConfig, resetDb, testConfig, waitFor } from "../helpers/env.ts";
import { gradedBy, type ScaledOut, startScaledOut } from "../helpers/scale.ts";
import { writeSmallStudies } from "../helpers/small-studies.ts";

const STUDIES = 30;
const work = join(tmpdir(), `kneegrade-scale-${process.pid}`);
let db: Db;
let cluster: ScaledOut | undefined;
let env: Record<string, string>;
let cleanup: (() => Promise<void>) | undefined;

beforeAll(async () => {
  await mkdir(work, { recursive: true });
  const config = await testConfig({ LISTENER_PORT: "0" });
  db = createDb(config.DATABASE_URL);
  cleanup = async () => {
    await db.$disconnect();
    await cleanupConfig(config);
  };
  await resetDb(db);
  env = {
    ...configEnv(config),
    MODEL_DIR: await testModel("test"),
    ALLOW_TEST_MODEL: "1",
    INFERENCE_THREADS: "1",
    WORKER_CONCURRENCY: "2",
    // A killed worker's jobs are taken again after this; long enough that a live worker on a
    // busy 2-core machine always renews its lock in time (a false stall would grade twice).
    JOB_LOCK_SECONDS: "10",
    LOG_LEVEL: "info",
  };
}, 600_000);
afterAll(async () => {
  await cluster?.stop();
  await cleanup?.();
  await rm(work, { recursive: true, force: true });
});

it("grades 30 studies exactly once over three workers, one of them killed mid-job", async () => {
  const studies = await writeSmallStudies(work, STUDIES);
  cluster = await startScaledOut(env, 3);
  const [victim, ...survivors] = cluster.workers as [
    (typeof cluster.workers)[number],
    ...typeof cluster.workers,
  ];
  expect(new Set(cluster.workers.map((w) => w.cwd)).size).toBe(3);

  const sent = await storescu(
    { port: cluster.listenerPort },
    studies.map((s) => s.path),
  );
  expect(sent.code, sent.stderr).toBe(0);

  // Once the victim has graded two studies, kill it while it holds jobs.
  await waitFor(
    async () => (gradedBy(victim).length >= 2 ? true : undefined),
    240_000,
    "the first worker to grade two studies",
    100,
  );
  const queue = createQueue(QUEUES.gradeStudy, {
    REDIS_URL: env.REDIS_URL!,
    QUEUE_PREFIX: env.QUEUE_PREFIX!,
  });
  let held: Job[] = [];
  try {
    held = await waitFor(
      async () => {
        const active = (await queue.getActive()).filter((j) => j.processedBy === victim.name);
        return active.length > 0 ? active : undefined;
      },
      30_000,
      "the first worker to hold a job",
      20,
    );
    await kill(victim.child, "SIGKILL");
  } finally {
    await queue.close();
  }
  const heldIds = held.map((j) => j.id!);

  // Everything gets graded by the two left.
  await waitFor(
    async () => {
      const done = await db.gradingJob.count({ where: { status: "COMPLETED" } });
      return done === STUDIES ? true : undefined;
    },
    600_000,
    `all ${STUDIES} studies graded`,
    500,
  );

  // ...and BullMQ has acknowledged each (the `job.completed` line follows the database commit).
  await waitFor(
    async () => (cluster!.workers.flatMap((w) => gradedBy(w)).length >= STUDIES ? true : undefined),
    60_000,
    "every job.completed line",
    200,
  );
  const jobs = await db.gradingJob.findMany({
    include: { study: true, _count: { select: { instances: true, results: true } } },
  });
  // One grading job per study, each with its one radiograph and its two knees recorded once.
  expect(jobs).toHaveLength(STUDIES);
  expect(new Set(jobs.map((j) => j.study.studyInstanceUid))).toEqual(
    new Set(studies.map((s) => s.studyInstanceUid)),
  );
  for (const j of jobs) {
    expect(j.status).toBe("COMPLETED");
    expect(j._count).toEqual({ instances: 1, results: 2 });
  }
  // Each job graded by exactly one worker, counting the killed one's finished jobs.
  const graded = cluster.workers.flatMap((w) => gradedBy(w));
  expect(graded.sort()).toEqual(jobs.map((j) => j.jobId).sort());
  // The jobs the victim held when it died (not one it finished in the instant before) were
  // finished by the others.
  const cutShort = heldIds.filter((id) => !gradedBy(victim).includes(id));
  expect(cutShort.length).toBeGreaterThan(0);
  const bySurvivors = new Set(survivors.flatMap((w) => gradedBy(w)));
  for (const id of cutShort) expect(bySurvivors.has(id), id).toBe(true);
  // Spread: every worker graded some (the victim at least the two it finished before it died).
  const counts = cluster.workers.map((w) => gradedBy(w).length);
  expect(counts[0]).toBeGreaterThanOrEqual(2);
  for (const c of counts.slice(1)) expect(c).toBeGreaterThanOrEqual(3);
  console.log(
    `graded per worker: ${counts.join(", ")} (the first killed holding ${cutShort.length} job(s))`,
  );
}, 900_000);
