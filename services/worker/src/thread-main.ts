/**
 * Runs inside the worker service's thread (see thread.ts): its own PostgreSQL client, logger and
 * metrics registry, the worker service itself, and a small protocol with the main thread —
 * "started"/"failed" once, "metrics" on request (for the process's /metrics), "close" → "closed".
 */
import { parentPort, workerData } from "node:worker_threads";
import type { Config } from "@kneegrade/config";
import { createDb } from "@kneegrade/db";
import { createLogger, errorFields } from "@kneegrade/log";
import { createMetrics } from "@kneegrade/ops";
import { startWorker } from "./service.ts";
import type { ThreadReply, ThreadRequest } from "./thread.ts";

const port = parentPort;
if (!port) throw new Error("thread-main.ts runs only as a worker thread (thread.ts)");
const { config } = workerData as { config: Config };
const post = (message: ThreadReply) => port.postMessage(message);
const log = createLogger("kneegrade", config.LOG_LEVEL).child({ service: "worker", thread: true });
const db = createDb(config.DATABASE_URL);
const metrics = createMetrics();
try {
  const worker = await startWorker(config, db, log, metrics);
  port.on("message", async (message: ThreadRequest) => {
    if (message.type === "metrics") {
      post({ type: "metrics", id: message.id, metrics: await metrics.registry.getMetricsAsJSON() });
    } else if (message.type === "close") {
      await worker.close();
      await db.$disconnect();
      post({ type: "closed" });
      port.close();
    }
  });
  post({ type: "started", model: worker.model, providers: worker.providers });
} catch (error) {
  log.error({ event: "worker.thread-failed", err: errorFields(error) }, "worker did not start");
  await db.$disconnect();
  post({ type: "failed", message: error instanceof Error ? error.message : String(error) });
  port.close();
}
