/**
 * The worker service's preparation threads (WORKER_PREPARE_THREADS): each reads a spooled
 * radiograph and prepares it for inference — decode, knee localisation and verification, crops —
 * in a thread of its own, while the worker's thread runs the ensemble (behind the micro-batcher,
 * which then gathers the knees of several studies into one run), writes the pictures and records
 * the results. So under a burst one study's decoding and localisation overlap with another's
 * inference and recording, and two studies localise at once on two cores, instead of every
 * radiograph waiting for the one localiser thread of the process.
 *
 * Requests wait in arrival order for a free thread. A thread that dies fails the request it held
 * (the job is retried by BullMQ) and is replaced.
 */
import { Worker } from "node:worker_threads";
import type { LocaliserModel, PreparedInstance } from "@kneegrade/grading";
import { errorFields, type Logger } from "@kneegrade/log";

const ENTRY = new URL("./prepare-entry.mjs", import.meta.url);

export interface PrepareRequest {
  id: number;
  path: string;
}

/** When and where a radiograph was prepared (wall-clock ms, the preparation thread's id). */
export interface PrepareSpan {
  thread: number;
  start: number;
  end: number;
}

export type PrepareReply =
  | { id: number; ok: true; prepared: PreparedInstance | null; readMs: number; span: PrepareSpan }
  | { id: number; ok: false; message: string };

export interface PreparedFile {
  /** Null when the spooled file is gone. */
  prepared: PreparedInstance | null;
  readMs: number;
  span: PrepareSpan;
}

export interface PreparePool {
  readonly threads: number;
  /** Reads and prepares the spooled file at `path`. */
  prepare(path: string): Promise<PreparedFile>;
  /** Stops the threads (requests still waiting are rejected). */
  close(): Promise<void>;
}

interface Request {
  id: number;
  path: string;
  resolve(file: PreparedFile): void;
  reject(error: Error): void;
}

interface Slot {
  worker: Worker;
  /** Started and answering (a replacement is not, until it says so). */
  ready: boolean;
  busy: Request | undefined;
}

/** Starts `threads` preparation threads for `model`; resolves once every one is ready. */
export async function startPreparePool(
  threads: number,
  model: LocaliserModel,
  log: Logger,
): Promise<PreparePool> {
  const waiting: Request[] = [];
  let closed = false;
  let nextId = 1;

  const pump = () => {
    for (const slot of slots) {
      if (!slot.ready || slot.busy || waiting.length === 0) continue;
      const request = waiting.shift()!;
      slot.busy = request;
      slot.worker.postMessage({ id: request.id, path: request.path } satisfies PrepareRequest);
    }
  };

  const spawn = (slot: Partial<Slot>): Promise<void> => {
    const worker = new Worker(ENTRY, {
      // Only what localisation needs: the predictor's functions stay on this thread.
      workerData: { model: { inputSize: model.inputSize, localiser: model.localiser } },
    });
    slot.worker = worker;
    slot.ready = false;
    slot.busy = undefined;
    const ready = new Promise<void>((resolve, reject) => {
      const exited = (code: number) =>
        reject(new Error(`the preparation thread stopped (exit code ${code})`));
      worker.once("error", reject);
      worker.once("exit", exited);
      worker.once("message", () => {
        worker.off("error", reject);
        worker.off("exit", exited);
        resolve();
      });
    });
    void ready.then(() => {
      slot.ready = true;
      worker.on("message", (reply: PrepareReply) => {
        const request = slot.busy;
        if (!request || request.id !== reply.id) return;
        slot.busy = undefined;
        if (reply.ok) request.resolve(reply);
        else request.reject(new Error(`preparing a radiograph: ${reply.message}`));
        pump();
      });
      worker.on("error", (error) =>
        log.error(
          { event: "worker.prepare-thread-error", err: errorFields(error) },
          "a preparation thread failed",
        ),
      );
      worker.on("exit", (code) => {
        slot.ready = false;
        if (closed) return;
        slot.busy?.reject(new Error(`the preparation thread stopped (exit code ${code})`));
        log.error(
          { event: "worker.prepare-thread-exited", code },
          "a preparation thread stopped: starting another",
        );
        // Requests wait for the replacement (or another thread) meanwhile.
        void spawn(slot).then(pump, (error) =>
          log.error(
            { event: "worker.prepare-thread-failed", err: errorFields(error) },
            "a preparation thread did not start",
          ),
        );
      });
    });
    return ready;
  };

  const slots: Slot[] = [];
  const starting: Promise<void>[] = [];
  for (let i = 0; i < threads; i++) {
    const slot = {} as Slot;
    slots.push(slot);
    starting.push(spawn(slot));
  }
  const stop = async () => {
    closed = true;
    for (const request of waiting.splice(0)) request.reject(new Error("the worker is closing"));
    await Promise.all(slots.map((s) => s.worker?.terminate()));
  };
  try {
    await Promise.all(starting);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    threads,
    prepare: (path) =>
      closed
        ? Promise.reject(new Error("the preparation threads are closed"))
        : new Promise<PreparedFile>((resolve, reject) => {
            waiting.push({ id: nextId++, path, resolve, reject });
            pump();
          }),
    close: stop,
  };
}
