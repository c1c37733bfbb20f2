/** The review pages' app on a reset test database, for tests that drive it without the other services. */
import type { Config } from "@kneegrade/config";
import { QUEUES } from "@kneegrade/contracts";
import { createDb, type Db } from "@kneegrade/db";
import { createLogger } from "@kneegrade/log";
import { buildReviewApp } from "@kneegrade/review";
import { Queue } from "bullmq";
import type { FastifyInstance } from "fastify";
import { resetDb, testConfig } from "./env.ts";

export interface ReviewAppUnderTest {
  config: Config;
  db: Db;
  /** Where signatures queue their report jobs (nothing takes them). */
  queue: Queue;
  app: FastifyInstance;
}

export async function startReviewApp(
  settings: Record<string, string>,
): Promise<ReviewAppUnderTest> {
  const config = await testConfig(settings);
  const db = createDb(config.DATABASE_URL);
  await resetDb(db);
  const queue = new Queue(QUEUES.reportStudy, {
    connection: { host: "127.0.0.1", port: 6379 },
    prefix: config.QUEUE_PREFIX,
  });
  const app = await buildReviewApp({
    db,
    config,
    log: createLogger("test", "silent"),
    reportQueue: queue,
  });
  return { config, db, queue, app };
}
