/**
 * Runs inside a preparation thread (see prepare-pool.ts): reads a spooled radiograph and prepares
 * it for inference (decode → localise → verify → crop, `prepareDicom`), one request at a time.
 * The knee localiser it calls runs in a thread of its own per preparation thread, so two
 * preparation threads localise two radiographs at once.
 */
import { readFile } from "node:fs/promises";
import { parentPort, threadId, workerData } from "node:worker_threads";
import { type LocaliserModel, prepareDicom } from "@kneegrade/grading";
import type { PrepareReply, PrepareRequest } from "./prepare-pool.ts";

const port = parentPort;
if (!port) throw new Error("prepare-main.ts runs only as a worker thread (prepare-pool.ts)");
const { model } = workerData as { model: LocaliserModel };

/** The file's bytes; null when it is gone (other disk errors are thrown: the job is retried). */
async function readSpooled(path: string): Promise<Uint8Array | null> {
  try {
    const bytes = await readFile(path);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

port.on("message", async ({ id, path }: PrepareRequest) => {
  const start = Date.now();
  const t = performance.now();
  try {
    const bytes = await readSpooled(path);
    const readMs = performance.now() - t;
    const prepared = bytes ? await prepareDicom(bytes, model) : null;
    const span = { thread: threadId, start, end: Date.now() };
    port.postMessage({ id, ok: true, prepared, readMs, span } satisfies PrepareReply);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    port.postMessage({ id, ok: false, message } satisfies PrepareReply);
  }
});
port.postMessage({ ready: true });
