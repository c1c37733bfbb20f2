/**
 * Studies arriving together: the worker's preparation threads (WORKER_PREPARE_THREADS) decode and
 * localise radiographs side by side while the worker's thread runs the ensemble, with the same
 * results as grading on the worker's thread alone; `kneegrade status` says how long a study queued
 * now waits. Real parts: storescu, the listener, PostgreSQL, Redis, the toolkit's test model.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QUEUES } from "@kneegrade/contracts";
import { prepareDicom } from "@kneegrade/grading";
import { Ensemble } from "@kneegrade/inference";
import { createLogger } from "@kneegrade/log";
import { createQueue } from "@kneegrade/queue";
import { composeBilateral, radiographDicom } from "@kneegrade/sample-radiographs";
import { testModel } from "@kneegrade/test-models";
import { type RunningWorker, startPreparePool, startWorker } from "@kneegrade/worker";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  collectStatus,
  formatStatus,
  SERVICE_TIME_JOBS,
  serviceSecondsPerStudy,
} from "../../packages/cli/src/status.ts";
import { storescu } from "../helpers/dcmtk.ts";
import { type Harness, startHarness, waitFor } from "../helpers/env.ts";
import { SAMPLE_CROPS } from "../helpers/small-studies.ts";
import { newUid } from "../helpers/studies.ts";

const work = join(tmpdir(), `kneegrade-pipeline-test-${process.pid}`);
const quiet = createLogger("test", "silent");

async function study(i: number) {
  const r = await composeBilateral([SAMPLE_CROPS[i % 5]!, SAMPLE_CROPS[(i + 2) % 5]!], i);
  const studyInstanceUid = newUid();
  const path = join(work, `${i}-${studyInstanceUid}.dcm`);
  await writeFile(path, radiographDicom(r, { studyInstanceUid }));
  return { path, studyInstanceUid };
}

describe("preparation threads", () => {
  let modelDir: string;
  let model: Pick<Ensemble, "inputSize" | "localiser">;
  const files: string[] = [];

  beforeAll(async () => {
    modelDir = await testModel("test");
    await mkdir(work, { recursive: true });
    const ensemble = await Ensemble.open({ modelDir, allowTestModel: true, logger: quiet });
    model = { inputSize: ensemble.inputSize, localiser: ensemble.localiser };
    await ensemble.close();
    for (let i = 0; i < 2; i++) files.push((await study(i)).path);
  }, 300_000);
  afterAll(() => rm(work, { recursive: true, force: true }));

  it("prepares two radiographs at once in two threads, as the worker's thread would", async () => {
    const pool = await startPreparePool(2, model, quiet);
    try {
      const [a, b] = await Promise.all(files.map((f) => pool.prepare(f)));
      // Both started before either finished, each in its own thread.
      expect(a!.span.thread).not.toBe(b!.span.thread);
      expect(a!.span.start).toBeLessThan(b!.span.end);
      expect(b!.span.start).toBeLessThan(a!.span.end);
      for (const [i, got] of [a!, b!].entries()) {
        const here = await prepareDicom(new Uint8Array(await readFile(files[i]!)), model);
        expect(got.prepared?.outcome).toBe("FOUND");
        if (got.prepared?.outcome !== "FOUND" || here.outcome !== "FOUND") continue;
        expect(got.prepared.knees.map((k) => [k.laterality, k.box])).toEqual(
          here.knees.map((k) => [k.laterality, k.box]),
        );
        expect(Array.from(got.prepared.knees[0]!.input)).toEqual(Array.from(here.knees[0]!.input));
      }
      // A file that is gone is reported as such, not thrown.
      expect((await pool.prepare(join(work, "gone.dcm"))).prepared).toBeNull();
    } finally {
      await pool.close();
    }
  }, 120_000);

  it("takes one radiograph at a time per thread: with one thread the second waits", async () => {
    const pool = await startPreparePool(1, model, quiet);
    try {
      const [a, b] = await Promise.all(files.map((f) => pool.prepare(f)));
      expect(b!.span.thread).toBe(a!.span.thread);
      expect(b!.span.start).toBeGreaterThanOrEqual(a!.span.end);
    } finally {
      await pool.close();
    }
  }, 120_000);
});

describe("a burst of studies through the worker, and the expected wait", () => {
  let h: Harness;
  let worker: RunningWorker | undefined;

  beforeAll(async () => {
    await mkdir(work, { recursive: true });
    h = await startHarness({
      STUDY_STABLE_SECONDS: "1",
      MODEL_DIR: await testModel("test"),
      ALLOW_TEST_MODEL: "1",
      WORKER_CONCURRENCY: "3",
      WORKER_PREPARE_THREADS: "2",
    });
  }, 300_000);
  afterEach(async () => {
    await worker?.close();
    worker = undefined;
  });
  afterAll(async () => {
    await h?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const graded = (uids: string[]) =>
    waitFor(
      async () => {
        const rows = await h.db.study.findMany({
          where: {
            studyInstanceUid: { in: uids },
            status: { in: ["GRADED", "FAILED", "REFUSED"] },
          },
          include: { jobs: { include: { results: { orderBy: { laterality: "asc" } } } } },
        });
        return rows.length === uids.length ? rows : undefined;
      },
      120_000,
      "studies graded",
    );

  it("grades studies sent together with overlapping jobs, the same as one radiograph at a time", async () => {
    // Three studies at once through the preparation threads, then the same images one by one on
    // the worker's thread: the grades and probabilities must not depend on the path.
    worker = await startWorker(h.config, h.db, quiet);
    const together = await Promise.all([0, 1, 2].map((i) => study(i)));
    const sent = await storescu(
      h.target,
      together.map((s) => s.path),
    );
    expect(sent.code, sent.stderr).toBe(0);
    const a = await graded(together.map((s) => s.studyInstanceUid));
    await worker.close();
    worker = await startWorker(
      { ...h.config, WORKER_PREPARE_THREADS: 0, WORKER_CONCURRENCY: 1 },
      h.db,
      quiet,
    );
    const alone = await Promise.all([0, 1, 2].map((i) => study(i)));
    for (const s of alone) expect((await storescu(h.target, [s.path])).code).toBe(0);
    const b = await graded(alone.map((s) => s.studyInstanceUid));

    const byUid = (rows: typeof a, uids: string[]) =>
      uids.map((u) => rows.find((r) => r.studyInstanceUid === u)!);
    const pipelined = byUid(
      a,
      together.map((s) => s.studyInstanceUid),
    );
    const serial = byUid(
      b,
      alone.map((s) => s.studyInstanceUid),
    );
    for (const [i, p] of pipelined.entries()) {
      expect(p.status).toBe("GRADED");
      const pr = p.jobs[0]!.results;
      const sr = serial[i]!.jobs[0]!.results;
      expect(pr).toHaveLength(2);
      expect(pr.map((r) => [r.laterality, r.klGrade])).toEqual(
        sr.map((r) => [r.laterality, r.klGrade]),
      );
      for (const [k, r] of pr.entries()) {
        const q = sr[k]!.probabilities as number[];
        for (const [j, v] of (r.probabilities as number[]).entries())
          expect(v).toBeCloseTo(q[j]!, 5);
      }
    }
    // Three studies at once with WORKER_CONCURRENCY 3: their grading overlapped in time.
    const spans = pipelined.map((p) => [
      p.jobs[0]!.startedAt!.getTime(),
      p.jobs[0]!.finishedAt!.getTime(),
    ]);
    const overlapping = spans.some(([s1, e1], i) =>
      spans.some(([s2], j) => j !== i && s2! >= s1! && s2! < e1!),
    );
    expect(overlapping).toBe(true);
  }, 240_000);

  it("measures the grading time per study over overlapping jobs, without idle gaps", () => {
    const at = (s: number) => new Date(1_000_000 + s * 1000);
    // Two jobs side by side for 4 s, then, after an idle minute, one of 2 s: 6 s busy, 3 jobs.
    const jobs = [
      { startedAt: at(0), finishedAt: at(4) },
      { startedAt: at(1), finishedAt: at(3) },
      { startedAt: at(64), finishedAt: at(66) },
    ];
    expect(serviceSecondsPerStudy(jobs)).toBeCloseTo(2, 6);
    expect(serviceSecondsPerStudy([])).toBeNull();
  });

  it("status shows the expected wait: the studies ahead times the recent time per study", async () => {
    // No worker: jobs added now wait, as they would behind a busy one.
    const queue = createQueue(QUEUES.gradeStudy, h.config);
    try {
      for (let i = 0; i < 5; i++)
        await queue.add(QUEUES.gradeStudy, { ahead: i }, { jobId: `ahead-${i}` });
      const status = await collectStatus(h.db, h.config);
      const recent = await h.db.gradingJob.findMany({
        where: { status: "COMPLETED" },
        orderBy: { finishedAt: "desc" },
        take: SERVICE_TIME_JOBS,
      });
      const perStudy = serviceSecondsPerStudy(
        recent.map((j) => ({ startedAt: j.startedAt!, finishedAt: j.finishedAt! })),
      )!;
      expect(perStudy).toBeGreaterThan(0);
      expect(status.wait.studiesAhead).toBe(5);
      expect(status.wait.secondsPerStudy).toBeCloseTo(perStudy, 6);
      expect(status.wait.seconds).toBeCloseTo(5 * perStudy, 6);
      expect(formatStatus(status)).toMatch(
        /^Expected wait: .+ \(5 studies ahead × \d+\.\d s per study recently\)$/m,
      );
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
    const empty = await collectStatus(h.db, h.config);
    expect(empty.wait.studiesAhead).toBe(0);
    expect(empty.wait.seconds).toBe(0);
  }, 60_000);
});
