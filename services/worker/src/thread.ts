/**
 * The worker service in a worker thread of the calling process (`kneegrade serve` with other
 * services, SERVE_WORKER_THREAD=1). Grading is CPU work on the thread that runs it — onnxruntime
 * runs each session synchronously, pixels and crops are JavaScript and sharp — so on the main
 * thread a busy worker would delay the listener's C-STORE responses. The thread has its own event
 * loop, PostgreSQL client and metrics registry; the process's /metrics reads the thread's metrics
 * when scraped (`metrics()`), and `close()` lets running jobs finish, as `startWorker`'s does.
 */
import { Worker } from "node:worker_threads";
import type { Config } from "@kneegrade/config";
import type { ModelCheck } from "@kneegrade/inference";
import type { Logger } from "@kneegrade/log";
import type { MetricSource } from "@kneegrade/ops";
import type { RunningWorker } from "./service.ts";

type MetricsJson = Awaited<ReturnType<MetricSource>>;

export type ThreadRequest = { type: "metrics"; id: number } | { type: "close" };
export type ThreadReply =
  | { type: "started"; model: ModelCheck; providers: Record<string, string> }
  | { type: "failed"; message: string }
  | { type: "metrics"; id: number; metrics: MetricsJson }
  | { type: "closed" };

export interface RunningWorkerThread extends RunningWorker {
  /** The thread's metrics, for the process's ops server. */
  metrics: MetricSource;
}

export async function startWorkerThread(config: Config, log: Logger): Promise<RunningWorkerThread> {
  const thread = new Worker(new URL("./thread-entry.mjs", import.meta.url), {
    workerData: { config },
  });
  const pending = new Map<number, (metrics: MetricsJson) => void>();
  let nextId = 0;
  let closing = false;
  let closed: (() => void) | undefined;
  const started = new Promise<Extract<ThreadReply, { type: "started" }>>((resolve, reject) => {
    thread.on("message", (message: ThreadReply) => {
      if (message.type === "started") resolve(message);
      else if (message.type === "failed") reject(new Error(message.message));
      else if (message.type === "metrics") pending.get(message.id)?.(message.metrics);
      else if (message.type === "closed") closed?.();
    });
    thread.once("error", reject);
  });
  // A thread that dies while the process runs leaves a process that takes no jobs: stop it, so the
  // supervisor (systemd, Docker, Kubernetes) starts it again.
  thread.on("error", (error) => {
    if (closing) return;
    log.fatal({ event: "worker.thread-crashed", err: error }, "the worker thread crashed");
    process.exit(1);
  });
  thread.on("exit", (code) => {
    if (closing) return;
    log.fatal({ event: "worker.thread-exited", code }, "the worker thread stopped unexpectedly");
    process.exit(1);
  });
  let ready: Extract<ThreadReply, { type: "started" }>;
  try {
    ready = await started;
  } catch (error) {
    closing = true;
    await thread.terminate();
    throw error;
  }
  return {
    model: ready.model,
    providers: ready.providers,
    metrics: () =>
      new Promise<MetricsJson>((resolve) => {
        const id = nextId++;
        pending.set(id, (metrics) => {
          pending.delete(id);
          resolve(metrics);
        });
        thread.postMessage({ type: "metrics", id } satisfies ThreadRequest);
      }),
    close: async () => {
      closing = true;
      const done = new Promise<void>((resolve) => {
        closed = resolve;
        thread.once("exit", () => resolve());
      });
      thread.postMessage({ type: "close" } satisfies ThreadRequest);
      await done;
      for (const resolve of pending.values()) resolve([]);
      await thread.terminate();
    },
  };
}
