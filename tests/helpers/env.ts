/**
 * The real local services, with a test database and a Redis key prefix of their own, and a fresh
 * spool directory per test file.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { type Config, loadConfig } from "@kneegrade/config";
import { createDb, type Db } from "@kneegrade/db";
import { type RunningListener, startListener } from "@kneegrade/listener";
import { createLogger, type Logger } from "@kneegrade/log";
import { testModel } from "@kneegrade/test-models";
import { Redis } from "ioredis";
import { type ScuTarget, storescu } from "./dcmtk.ts";
import type { TestStudy } from "./studies.ts";

export const TEST_DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/kneegrade_test";
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export async function testConfig(overrides: Record<string, string> = {}): Promise<Config> {
  const spool = await mkdtemp(join(tmpdir(), "kneegrade-spool-"));
  return loadConfig({
    DATABASE_URL: TEST_DATABASE_URL,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: `kgtest-${randomUUID().slice(0, 8)}`,
    LISTENER_HOST: "127.0.0.1",
    SPOOL_DIR: spool,
    SPOOL_MIN_FREE_MB: "0",
    STUDY_STABLE_SECONDS: "1",
    LOG_LEVEL: "silent",
    PACS_PORT: "1",
    LISTENER_PORT: "0",
    ...overrides,
  });
}

export async function cleanupConfig(config: Config): Promise<void> {
  await rm(config.SPOOL_DIR, { recursive: true, force: true });
  const redis = new Redis(config.REDIS_URL);
  const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
}

export async function resetDb(db: Db): Promise<void> {
  await db.$executeRawUnsafe(
    `TRUNCATE "AuditEvent", "Delivery", "Report", "KneeResult", "InstanceGrading", "GradingJob", "Instance", "Series", "Study" CASCADE`,
  );
}

export interface Harness {
  config: Config;
  db: Db;
  listener: RunningListener;
  target: ScuTarget;
  stop(): Promise<void>;
}

/**
 * The settings of a test through the whole pipeline: studies settle after a second, a test model
 * grades them (`threads` onnxruntime threads) and the reports go to the PACS at `pacsPort`
 * (Orthanc's AE title) with short retries.
 */
export async function pipelineSettings(
  pacsPort: number,
  model: "smoke" | "test",
  threads = 1,
): Promise<Record<string, string>> {
  return {
    STUDY_STABLE_SECONDS: "1",
    MODEL_DIR: await testModel(model),
    ALLOW_TEST_MODEL: "1",
    INFERENCE_THREADS: String(threads),
    PACS_HOST: "127.0.0.1",
    PACS_PORT: String(pacsPort),
    PACS_AET: "ORTHANC",
    DIMSE_TIMEOUT_SECONDS: "5",
    DELIVERY_BACKOFF_SECONDS: "0.3",
  };
}

/** A debug-level logger whose every line is pushed onto `lines` (to look for patient data in them). */
export function capturingLogger(lines: string[]): Logger {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return createLogger("test", "debug", sink);
}

/** An in-process listener on the real PostgreSQL and Redis. */
export async function startHarness(overrides: Record<string, string> = {}): Promise<Harness> {
  const config = await testConfig(overrides);
  const db = createDb(config.DATABASE_URL);
  await resetDb(db);
  const listener = await startListener(config, db, createLogger("test", "silent"));
  return {
    config,
    db,
    listener,
    target: { port: listener.port, calledAet: config.LISTENER_AET },
    async stop() {
      await listener.close();
      await db.$disconnect();
      await cleanupConfig(config);
    },
  };
}

/** Sends a study with storescu, one association per transfer syntax (as modalities do). */
export async function sendStudy(target: ScuTarget, study: Pick<TestStudy, "instances">) {
  const groups = new Map<string, string[]>();
  for (const i of study.instances) {
    const key = i.storescuArgs.join(" ");
    groups.set(key, [...(groups.get(key) ?? []), i.path]);
  }
  const results = [];
  for (const [args, files] of groups) {
    results.push(await storescu(target, files, args ? args.split(" ") : []));
  }
  return results;
}

/** Polls until `check` returns a value (not undefined) or the time is up. */
export async function waitFor<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 15_000,
  what = "a condition",
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Polls until a grading job of the study is running (ACTIVE), and returns it. */
export function activeGradingJob(db: Db, studyInstanceUid: string, timeoutMs: number) {
  return waitFor(
    async () =>
      (await db.gradingJob.findFirst({
        where: { study: { studyInstanceUid }, status: "ACTIVE" },
      })) ?? undefined,
    timeoutMs,
    "a grading job to start",
    20,
  );
}

type Closable = { close(): Promise<unknown> } | { stop(): Promise<unknown> } | undefined;

/**
 * Closes what a test file started, one after the other in the order given (consumers before what
 * they consume), passing over what never started.
 */
export async function closeAll(...things: Closable[]): Promise<void> {
  for (const thing of things) {
    if (thing) await ("close" in thing ? thing.close() : thing.stop());
  }
}
