/**
 * Compressed frames are decoded by CharLS (@cornerstonejs/codec-charls: JPEG-LS) and dcmjs-codecs
 * (libjpeg 8/12/16-bit, OpenJPEG and an RLE decoder), compiled to WebAssembly, in worker threads,
 * so that a stream that traps a WebAssembly module, or makes a decoder loop, costs one worker and
 * one CORRUPT_PIXEL_DATA error instead of the process. Workers start lazily, are reused, and do
 * not keep the process alive when idle. A worker returns the frame's stored values, not the
 * decoder's samples: they are converted where they are decoded (samples.mjs), and the frame's
 * buffers are transferred, never copied, in both directions.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { PixelDataError } from "./errors.ts";
import type { CompactStored } from "./samples.mjs";

export type CodecName = "jpeg" | "jpegls" | "jpeg2000" | "rle";

export interface FrameToDecode {
  codec: CodecName;
  /** The frame's compressed bytes; the pool takes ownership of the buffer (it is transferred). */
  encoded: Uint8Array;
  width: number;
  height: number;
  bitsAllocated: number;
  bitsStored: number;
  pixelRepresentation: 0 | 1;
  photometric: string;
  /** Whether the codec is lossy: its samples are then clamped to the stored range, not masked. */
  lossy: boolean;
}

export interface CodecOptions {
  /** Worker threads decoding in parallel (default: min(2, available CPUs)). */
  workers: number;
  /** A decode still running after this long is abandoned and its worker killed (default 60 s). */
  timeoutMs: number;
}

const options: CodecOptions = {
  workers: Math.max(1, Math.min(2, availableParallelism())),
  timeoutMs: 60_000,
};

type WorkerReply =
  | { id: number; ok: true; stored: ArrayBuffer }
  | { id: number; ok: false; message: string; trap: boolean };

interface Job {
  frame: FrameToDecode;
  resolve: (stored: CompactStored) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker?: Worker;
  job?: Job & { id: number; timer: NodeJS.Timeout };
}

const WORKER_URL = new URL("./codec-worker.mjs", import.meta.url);
const slots: Slot[] = [];
const queue: Job[] = [];
let nextId = 1;

/** Changes the pool size or the per-frame deadline; applies to decodes started afterwards. */
export function configureCodecs(next: Partial<CodecOptions>): void {
  if (next.workers !== undefined) options.workers = Math.max(1, Math.floor(next.workers));
  if (next.timeoutMs !== undefined) options.timeoutMs = next.timeoutMs;
}

/** Terminates every codec worker (e.g. at shutdown); frames being or waiting to be decoded are rejected. */
export async function closeCodecs(): Promise<void> {
  for (const job of queue.splice(0)) {
    job.reject(new PixelDataError("CORRUPT_PIXEL_DATA", "the codec workers were closed"));
  }
  const running = slots.splice(0);
  await Promise.all(
    running.map((slot) => {
      if (slot.job) fail(slot, "the codec workers were closed");
      const w = slot.worker;
      slot.worker = undefined;
      return w?.terminate();
    }),
  );
}

function fail(slot: Slot, message: string, cause?: unknown): void {
  const job = slot.job;
  if (!job) return;
  slot.job = undefined;
  clearTimeout(job.timer);
  job.reject(new PixelDataError("CORRUPT_PIXEL_DATA", message, { cause }));
}

function kill(slot: Slot): void {
  const w = slot.worker;
  slot.worker = undefined;
  void w?.terminate();
}

function startWorker(slot: Slot): Worker {
  const worker = new Worker(WORKER_URL);
  worker.unref();
  worker.on("message", (reply: WorkerReply) => {
    const job = slot.job;
    if (!job || job.id !== reply.id) return;
    slot.job = undefined;
    clearTimeout(job.timer);
    worker.unref();
    if (reply.ok) job.resolve(compact(reply.stored, job.frame));
    else {
      const what = reply.trap ? "the decoder aborted" : "the decoder failed";
      job.reject(
        new PixelDataError(
          "CORRUPT_PIXEL_DATA",
          `${codecLabel(job.frame.codec)}: ${what}: ${reply.message.trim()}`,
        ),
      );
      // A trapped WebAssembly instance may be left inconsistent: start afresh next time.
      if (reply.trap) kill(slot);
    }
    dispatch();
  });
  const gone = (error?: unknown) => {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    fail(
      slot,
      `the ${slot.job ? codecLabel(slot.job.frame.codec) : "codec"} worker died: ${String(error ?? "exited")}`,
      error,
    );
    dispatch();
  };
  worker.on("error", gone);
  worker.on("exit", (code) => gone(`exit code ${code}`));
  return worker;
}

export function codecLabel(codec: CodecName): string {
  return {
    jpeg: "JPEG decoder (libjpeg)",
    jpegls: "JPEG-LS decoder (CharLS)",
    jpeg2000: "JPEG 2000 decoder (OpenJPEG)",
    rle: "RLE decoder",
  }[codec];
}

function dispatch(): void {
  while (queue.length > 0) {
    let slot = slots.find((s) => !s.job);
    if (!slot && slots.length < options.workers) {
      slot = {};
      slots.push(slot);
    }
    if (!slot) return;
    const job = queue.shift()!;
    const worker = slot.worker ?? startWorker(slot);
    slot.worker = worker;
    const id = nextId++;
    const target = slot;
    const timer = setTimeout(() => {
      fail(
        target,
        `${codecLabel(job.frame.codec)} did not finish within ${options.timeoutMs} ms; abandoned`,
      );
      kill(target);
      dispatch();
    }, options.timeoutMs);
    timer.unref();
    slot.job = { ...job, id, timer };
    worker.ref(); // keep the process alive while a decode is pending
    const { encoded, ...rest } = job.frame;
    // Transfer the frame's own buffer; copy first when it is a view into something larger
    // (new Uint8Array(view) copies, whereas Buffer#slice would not).
    const buffer =
      encoded.byteOffset === 0 &&
      encoded.byteLength === encoded.buffer.byteLength &&
      encoded.buffer instanceof ArrayBuffer
        ? encoded.buffer
        : new Uint8Array(encoded).buffer;
    worker.postMessage({ id, ...rest, encoded: buffer }, [buffer]);
  }
}

/** The worker's stored values as 1 or 2 bytes per pixel, signed when Pixel Representation is 1. */
function compact(buffer: ArrayBuffer, frame: FrameToDecode): CompactStored {
  const signed = frame.pixelRepresentation === 1;
  if (buffer.byteLength === frame.width * frame.height) {
    return signed ? new Int8Array(buffer) : new Uint8Array(buffer);
  }
  return signed ? new Int16Array(buffer) : new Uint16Array(buffer);
}

/**
 * Decodes one frame into its stored values (width x height, masked or clamped to Bits Stored), at
 * the decoder's sample width.
 */
export function decodeFrame(frame: FrameToDecode): Promise<CompactStored> {
  return new Promise((resolve, reject) => {
    queue.push({ frame, resolve, reject });
    dispatch();
  });
}
