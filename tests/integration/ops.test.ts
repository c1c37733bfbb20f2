/**
 * The ops surface of `kneegrade serve`, as Prometheus and a kubelet see it: /metrics counters move
 * when a real study (DCMTK storescu) goes through listener → worker → reporter → Orthanc; /readyz
 * turns false when PostgreSQL or Redis goes away (a proxy in front of each, cut and restored: the
 * shared servers stay up) and true again after; the worker and reporter are unready without a model
 * or a PACS; the queue view answers loopback peers only.
 */
import { mkdir, rm } from "node:fs/promises";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { createDb, type Db } from "@kneegrade/db";
import { testModel } from "@kneegrade/test-models";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configEnv, kill, metricsPortOf, startServe } from "../helpers/cli.ts";
import { storescu } from "../helpers/dcmtk.ts";
import { cleanupConfig, resetDb, testConfig, waitFor } from "../helpers/env.ts";
import { readyz, sampleValue, scrape } from "../helpers/metrics.ts";
import { type RunningOrthanc, startOrthanc } from "../helpers/orthanc.ts";
import { startSwitchProxy } from "../helpers/proxy.ts";
import { writeSmallStudies } from "../helpers/small-studies.ts";

const work = join(tmpdir(), `kneegrade-ops-${process.pid}`);
let db: Db;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  await mkdir(work, { recursive: true });
  const config = await testConfig();
  db = createDb(config.DATABASE_URL);
  await resetDb(db);
  cleanups.push(
    () => db.$disconnect(),
    () => cleanupConfig(config),
  );
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await rm(work, { recursive: true, force: true });
});

describe("metrics of a study through the whole pipeline", () => {
  let orthanc: RunningOrthanc;
  let env: Record<string, string>;
  let serve: Awaited<ReturnType<typeof startServe>>;
  let port: number;

  beforeAll(async () => {
    orthanc = await startOrthanc("ORTHANC");
    cleanups.push(() => orthanc.stop());
    const config = await testConfig({ LISTENER_PORT: "0" });
    cleanups.push(() => cleanupConfig(config));
    env = {
      ...configEnv(config),
      MODEL_DIR: await testModel("test"),
      ALLOW_TEST_MODEL: "1",
      PACS_HOST: "127.0.0.1",
      PACS_PORT: String(orthanc.dicomPort),
      PACS_AET: orthanc.aet,
      INFERENCE_THREADS: "1",
    };
    serve = await startServe(env, []);
    cleanups.push(() => kill(serve.child, "SIGTERM"));
    port = metricsPortOf(serve.output());
  });

  it("counts instances, bytes, grading stages, batches, deliveries and study states", async () => {
    const before = await scrape(port);
    expect(sampleValue(before, "kneegrade_instances_received_total")).toBe(0);
    expect(sampleValue(before, "kneegrade_model_loaded")).toBe(1);
    // The model's version and status, and the provider of each member (the test model has two).
    const members = before.filter((s) => s.name === "kneegrade_model_info");
    expect(members.length).toBe(2);
    for (const m of members) {
      expect(m.labels).toMatchObject({ status: "smoke", provider: "cpu" });
      expect(m.labels.version).toBeTruthy();
    }
    expect(sampleValue(before, "process_resident_memory_bytes")).toBeGreaterThan(10e6);
    expect((await readyz(port)).body).toEqual({
      ready: true,
      checks: {
        started: { ok: true },
        postgres: { ok: true },
        redis: { ok: true },
        model: { ok: true },
        pacs: { ok: true },
      },
    });

    const [study] = await writeSmallStudies(work, 1);
    const listenerPort = Number(
      /"event":"listener.started"[^\n]*"port":(\d+)/.exec(serve.output())?.[1],
    );
    const sent = await storescu({ port: listenerPort }, [study!.path]);
    expect(sent.code, sent.stderr).toBe(0);
    // A refused association counts by reason.
    const wrongAet = await storescu({ port: listenerPort, calledAet: "NOT_US" }, [study!.path]);
    expect(wrongAet.code).not.toBe(0);

    await waitFor(
      async () => {
        const s = await db.study.findUnique({
          where: { studyInstanceUid: study!.studyInstanceUid },
        });
        return s?.status === "REPORTED" ? s : undefined;
      },
      120_000,
      "the study to be reported",
    );
    const after = await scrape(port);
    expect(sampleValue(after, "kneegrade_instances_received_total", { outcome: "knee" })).toBe(1);
    expect(sampleValue(after, "kneegrade_received_bytes_total")).toBeGreaterThan(720 * 600 * 2);
    expect(
      sampleValue(after, "kneegrade_associations_refused_total", {
        reason: "called AE title not recognized",
      }),
    ).toBe(1);
    for (const stage of ["read", "decode", "localise", "inference"]) {
      expect(
        sampleValue(after, "kneegrade_grading_stage_seconds_count", { stage }),
        `stage ${stage}`,
      ).toBe(1);
      expect(sampleValue(after, "kneegrade_grading_stage_seconds_sum", { stage })).toBeGreaterThan(
        0,
      );
    }
    expect(sampleValue(after, "kneegrade_instances_graded_total", { outcome: "GRADED" })).toBe(1);
    expect(sampleValue(after, "kneegrade_knees_graded_total")).toBe(2);
    // Both knees of the one radiograph went through the ensemble (in one batch or more).
    expect(sampleValue(after, "kneegrade_inference_batch_size_sum")).toBe(2);
    expect(
      sampleValue(after, "kneegrade_jobs_total", { queue: "grade-study", outcome: "completed" }),
    ).toBe(1);
    expect(
      sampleValue(after, "kneegrade_jobs_total", { queue: "report-study", outcome: "completed" }),
    ).toBe(1);
    // SR and Secondary Capture (the defaults), both stored by Orthanc.
    expect(sampleValue(after, "kneegrade_deliveries_total", { outcome: "sent" })).toBe(2);
    expect(sampleValue(after, "kneegrade_studies", { state: "REPORTED" })).toBe(1);
    expect(sampleValue(after, "kneegrade_studies", { state: "QUEUED" })).toBe(0);
    expect(
      sampleValue(after, "kneegrade_queue_jobs", { queue: "grade-study", state: "completed" }),
    ).toBe(1);
    // No UID (nor anything else from the data set) is ever a label.
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).not.toContain(study!.studyInstanceUid);
    expect(text).not.toContain("SYNTH");
  });

  it("serves the read-only queue view to loopback peers only", async () => {
    const local = await fetch(`http://127.0.0.1:${port}/queues`);
    expect(local.status).toBe(200);
    expect(await local.text()).toContain("<html");
    const api = await fetch(`http://127.0.0.1:${port}/queues/api/queues`);
    expect(api.status).toBe(200);
    const names = ((await api.json()) as { queues: { name: string; readOnlyMode: boolean }[] })
      .queues;
    expect(names.map((q) => q.name).sort()).toEqual(["grade-study", "report-study"]);
    expect(names.every((q) => q.readOnlyMode)).toBe(true);
  });
});

const external = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === "IPv4" && !a.internal)?.address;

describe("readiness", () => {
  it("turns false when Redis or PostgreSQL goes away and true again after", async () => {
    const config = await testConfig({ LISTENER_PORT: "0" });
    cleanups.push(() => cleanupConfig(config));
    const redisUrl = new URL(config.REDIS_URL);
    const dbUrl = new URL(config.DATABASE_URL);
    const redisProxy = await startSwitchProxy(Number(redisUrl.port || 6379));
    const pgProxy = await startSwitchProxy(Number(dbUrl.port || 5432));
    cleanups.push(
      () => redisProxy.close(),
      () => pgProxy.close(),
    );
    redisUrl.port = String(redisProxy.port);
    dbUrl.port = String(pgProxy.port);
    const serve = await startServe(
      {
        ...configEnv(config),
        REDIS_URL: redisUrl.toString(),
        DATABASE_URL: dbUrl.toString(),
        // Reachable from outside loopback too, so the queue view's address check is tested.
        METRICS_HOST: "0.0.0.0",
      },
      ["--only", "listener"],
    );
    cleanups.push(() => kill(serve.child, "SIGTERM"));
    const port = metricsPortOf(serve.output());
    /** Polls /readyz until it answers `status`; returns that answer. */
    const readyzBecomes = (status: number, what: string) =>
      waitFor(
        async () => {
          const r = await readyz(port);
          return r.status === status ? r : undefined;
        },
        20_000,
        `/readyz to be ${status} ${what}`,
      );

    expect(await readyz(port)).toMatchObject({ status: 200, body: { ready: true } });
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);

    redisProxy.down();
    const noRedis = await readyzBecomes(503, "without Redis");
    expect(noRedis.body.ready).toBe(false);
    expect(noRedis.body.checks.redis!.ok).toBe(false);
    expect(noRedis.body.checks.postgres!.ok).toBe(true);
    // Liveness is not readiness: the process is fine, a restart would not help.
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    // Metrics still answer: study states from PostgreSQL, the queue gauges left out.
    const scraped = await scrape(port);
    expect(scraped.filter((x) => x.name === "kneegrade_studies")).toHaveLength(7);
    expect(scraped.filter((x) => x.name === "kneegrade_queue_jobs")).toEqual([]);
    redisProxy.up();
    await readyzBecomes(200, "with Redis back");

    pgProxy.down();
    const noPostgres = await readyzBecomes(503, "without PostgreSQL");
    expect(noPostgres.body.checks.postgres!.ok).toBe(false);
    expect(noPostgres.body.checks.postgres!.error).toBeTruthy();
    expect(noPostgres.body.checks.redis!.ok).toBe(true);
    pgProxy.up();
    await readyzBecomes(200, "with PostgreSQL back");
    expect((await readyz(port)).body.checks).toEqual({
      started: { ok: true },
      postgres: { ok: true },
      redis: { ok: true },
    });

    // The queue view: loopback only, even with the ops port open to the network.
    expect((await fetch(`http://127.0.0.1:${port}/queues`)).status).toBe(200);
    expect(external, "this test needs a non-loopback IPv4 address").toBeDefined();
    const remote = await fetch(`http://${external}:${port}/queues`);
    expect(remote.status).toBe(403);
    // /metrics is for the scraper, wherever it runs.
    expect((await fetch(`http://${external}:${port}/metrics`)).status).toBe(200);
  });

  it("is false for a worker without a model and a reporter without a PACS", async () => {
    const config = await testConfig({ MODEL_DIR: join(work, "no-model"), PACS_PORT: "1" });
    cleanups.push(() => cleanupConfig(config));
    const serve = await startServe(
      { ...configEnv(config), MODEL_DIR: config.MODEL_DIR, DIMSE_TIMEOUT_SECONDS: "2" },
      ["--only", "worker,reporter"],
    );
    cleanups.push(() => kill(serve.child, "SIGTERM"));
    const port = metricsPortOf(serve.output());
    const r = await readyz(port);
    expect(r.status).toBe(503);
    expect(r.body.checks).toMatchObject({
      postgres: { ok: true },
      redis: { ok: true },
      model: { ok: false },
      pacs: { ok: false },
    });
    expect(r.body.checks.model!.error).toContain("no usable model");
    expect(r.body.checks.pacs!.error).toContain("C-ECHO");
    expect(sampleValue(await scrape(port), "kneegrade_model_loaded")).toBe(0);
  });
});
