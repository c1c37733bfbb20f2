/**
 * A scaled-out kneegrade on one machine, the way several pods or hosts run it: one listener
 * process and N worker processes (`kneegrade serve --only …`), each worker in a working directory
 * of its own, all on one queue (QUEUE_PREFIX), one PostgreSQL and one shared spool (SPOOL_DIR).
 */
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kill, startServe } from "./cli.ts";

export interface WorkerProcess {
  child: ChildProcess;
  output: () => string;
  /** BullMQ's `processedBy` of the jobs it takes (host:pid). */
  name: string;
  cwd: string;
}

export interface ScaledOut {
  listenerPort: number;
  workers: WorkerProcess[];
  stop(): Promise<void>;
}

/** Starts the listener and `workers` worker processes; resolves once all of them are running. */
export async function startScaledOut(env: Record<string, string>, workers: number) {
  const listener = await startServe(env, ["--only", "listener"]);
  const listenerPort = Number(
    /"event":"listener.started"[^\n]*"port":(\d+)/.exec(listener.output())?.[1],
  );
  const started: WorkerProcess[] = [];
  const stop = async () => {
    for (const w of started) await kill(w.child, "SIGTERM");
    await kill(listener.child, "SIGTERM");
    for (const w of started) await rm(w.cwd, { recursive: true, force: true });
  };
  try {
    // One after the other: on a small machine parallel start-ups only slow each other down.
    for (let i = 0; i < workers; i++) {
      const cwd = await mkdtemp(join(tmpdir(), `kneegrade-worker-${i}-`));
      const serve = await startServe(env, ["--only", "worker"], "serve.started", cwd);
      const name = /"event":"worker.started"[^\n]*"worker":"([^"]+)"/.exec(serve.output())?.[1];
      if (!name) throw new Error(`worker ${i} did not start:\n${serve.output()}`);
      started.push({ ...serve, name, cwd });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { listenerPort, workers: started, stop } satisfies ScaledOut;
}

/** Job ids each worker finished grading (`job.completed`, not skipped as graded before). */
export function gradedBy(worker: WorkerProcess): string[] {
  return worker
    .output()
    .split("\n")
    .filter((l) => l.includes('"event":"job.completed"'))
    .map((l) => JSON.parse(l) as { jobId: string; skipped: boolean })
    .filter((e) => !e.skipped)
    .map((e) => e.jobId);
}
