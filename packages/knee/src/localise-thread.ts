/**
 * {@link localiseKnees} and {@link verifyKneeCrops} in a worker thread (localise-worker.mjs): the
 * same functions and results, off the caller's event loop. The thread starts on first use, takes one radiograph at a time,
 * does not keep the process alive when idle, and is started afresh if it dies.
 */
import { Worker } from "node:worker_threads";
import type { GreyImage, LocaliseOptions, LocaliseResult } from "./localise.ts";
import type { KneeVerdict } from "./verify.ts";

const WORKER_URL = new URL("./localise-worker.mjs", import.meta.url);

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; message: string };

let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, { resolve: (r: unknown) => void; reject: (e: Error) => void }>();

function start(): Worker {
  const w = new Worker(WORKER_URL);
  w.unref();
  w.on("message", (reply: Reply) => {
    const p = pending.get(reply.id);
    if (!p) return;
    pending.delete(reply.id);
    if (pending.size === 0) w.unref();
    if (reply.ok) p.resolve(reply.result);
    else p.reject(new Error(`knee localiser: ${reply.message}`));
  });
  const gone = (why: unknown) => {
    if (worker !== w) return;
    worker = undefined;
    for (const [id, p] of pending) {
      pending.delete(id);
      p.reject(new Error(`the knee localiser's thread stopped: ${String(why)}`));
    }
  };
  w.on("error", gone);
  w.on("exit", (code) => gone(`exit code ${code}`));
  return w;
}

function request<T>(message: object, transfer: ArrayBuffer[]): Promise<T> {
  worker ??= start();
  const w = worker;
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    pending.set(id, { resolve: resolve as (r: unknown) => void, reject });
    w.ref(); // keep the process alive while a request is pending
    w.postMessage({ id, ...message }, transfer);
  });
}

/** Same contract as {@link localiseKnees}; the image is copied, the caller keeps its own. */
export function localiseKneesOffThread(
  img: GreyImage,
  options: LocaliseOptions = {},
): Promise<LocaliseResult> {
  const data = new Uint8Array(img.data); // a copy to transfer: the caller cuts crops from its own
  return request(
    { op: "localise", image: { width: img.width, height: img.height, data }, options },
    [data.buffer],
  );
}

/** Same contract as {@link verifyKneeCrops} (the crops are copied). */
export function verifyKneeCropsOffThread(crops224: Uint8Array[]): Promise<KneeVerdict[]> {
  return request({ op: "verify", crops: crops224.map((c) => new Uint8Array(c)) }, []);
}

/** Stops the thread (tests, shutdown); the next call starts a new one. */
export async function closeLocaliserThread(): Promise<void> {
  const w = worker;
  worker = undefined;
  await w?.terminate();
}
