/**
 * The spool: where received objects are kept, one Part 10 file per instance at
 * `<SPOOL_DIR>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`.
 *
 * A C-STORE data set is written to `<SPOOL_DIR>/.incoming/` as it arrives, hashed on the way,
 * fsynced, and only then renamed into place; the directory is fsynced too, so a success status is
 * never sent for bytes that a power cut could take back. Memory per object is bounded: it is kept
 * whole only in one of a few pooled buffers of fixed size (`ObjectBufferPool`), and otherwise
 * streams through in pieces.
 */
import { randomUUID } from "node:crypto";
import { constants as fsConstants, statfsSync } from "node:fs";
import { type FileHandle, mkdir, open, readdir, rename, rm, unlink } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { Writable } from "node:stream";
import {
  createInstanceDigest,
  encodeFileMetaInformation,
  type FileMetaInformation,
  isDicomUid,
} from "@kneegrade/dicom";

/** Enough for the header of any ordinary radiograph; larger headers fall back to a file read. */
const HEAD_BYTES = 256 * 1024;
/** The end of the data set, where encapsulated pixel data must be terminated. */
const TAIL_BYTES = 1024;
/** Received bytes are written to the file in pieces of about this size. */
const WRITE_BYTES = 1024 * 1024;

export const INCOMING_DIR = ".incoming";

export interface SpooledFile {
  tmpPath: string;
  /** `Instance.digest` of the file (`instanceDigest`). */
  digest: string;
  sizeBytes: number;
  /** The first bytes of the file, for reading the header without another disk read. */
  head: Buffer;
  /** The last bytes of the file, to tell a complete data set from a truncated one. */
  tail: Buffer;
  isWholeFile: boolean;
  /** The whole file, when it was kept in memory as it was written (valid until `release`). */
  whole?: Buffer;
  /** Gives the memory behind `whole`, `head` and `tail` back; call once they are no longer read. */
  release(): void;
}

/** Why bytes were dropped instead of kept; answered with "out of resources". */
export type SpoolRefusal = "instance-too-large" | "disk-full" | "disk-watermark" | "write-failed";

/**
 * Buffers that hold a received object whole while it is written, checked and recorded, reused
 * from one object to the next. Fresh memory per object (6 MB for a CR) is external memory, and
 * external memory is what makes V8 collect its whole heap (docs/PERFORMANCE.md, "Ingest"); a
 * whole object in memory also spares the structure check a read of the file. At most
 * `maxBuffers` exist (one per association receiving at once; the others stream through fresh
 * memory, as larger objects do), each allocated on first use.
 */
export class ObjectBufferPool {
  private readonly idle: Buffer[] = [];
  private allocated = 0;

  constructor(
    readonly bufferBytes = 16 * 1024 * 1024,
    readonly maxBuffers = 2,
  ) {}

  take(): Buffer | undefined {
    const reused = this.idle.pop();
    if (reused) return reused;
    if (this.allocated >= this.maxBuffers) return undefined;
    this.allocated += 1;
    return Buffer.allocUnsafeSlow(this.bufferBytes);
  }

  give(buffer: Buffer): void {
    this.idle.push(buffer);
  }
}

/**
 * The Writable that dcmjs-dimse fills with one C-STORE data set, PDV by PDV. `write` copies each
 * PDV at once (dcmjs-dimse hands views of the reused receive buffer, server.ts) into the object's
 * pooled buffer — or, without one, into fresh memory — hashes it, and writes what has gathered to
 * the file in pieces of WRITE_BYTES; `end` writes the rest and fsyncs. It never throws back into
 * the DIMSE layer: a failure is remembered and reported by `finish()`, so the peer gets a status.
 */
export class SpoolWriter extends Writable {
  readonly tmpPath: string;
  private file?: FileHandle;
  /** Every file operation, in order: the open, then each write. */
  private io: Promise<void>;
  private readonly hash = createInstanceDigest();
  /** The pooled buffer holding the object from its first byte, while it fits (`inWhole`). */
  private whole: Buffer | undefined;
  private inWhole = true;
  /** Fresh memory gathered for the next write, once the object is not (or no longer) in `whole`. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes of the object so far (file meta information included), and how many went to the file. */
  private size = 0;
  private queued = 0;
  private readonly headChunks: Buffer[] = [];
  private headLength = 0;
  private tail = Buffer.alloc(0);
  refusal?: SpoolRefusal;
  failure?: Error;

  constructor(
    spoolDir: string,
    meta: FileMetaInformation,
    private readonly maxBytes: number,
    /** Set when the instance is refused before its first byte (the disk watermark). */
    refusal?: SpoolRefusal,
    private readonly pool?: ObjectBufferPool,
  ) {
    super();
    this.refusal = refusal;
    this.tmpPath = join(spoolDir, INCOMING_DIR, `${randomUUID()}.part`);
    if (refusal) {
      this.io = Promise.resolve();
      return;
    }
    this.whole = pool?.take();
    this.io = open(
      this.tmpPath,
      fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY,
      0o640,
    ).then(
      (file) => {
        this.file = file;
      },
      (error: Error) => this.fail(error),
    );
    this.take(encodeFileMetaInformation(meta));
  }

  /**
   * Takes one chunk of the data set; its bytes are copied before this returns. Always true: the
   * bytes are in the writer's memory, and dcmjs-dimse would hold a PDU's later PDVs back until
   * "drain" if it were false.
   */
  override write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    const done = typeof encoding === "function" ? encoding : callback;
    if (Buffer.isBuffer(chunk) && !this.writableEnded && !this.destroyed) this.take(chunk);
    if (typeof done === "function") process.nextTick(done as () => void, null);
    return true;
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.refusal) this.flush(true);
    this.io
      .then(() => (this.file && !this.refusal ? this.file.sync() : undefined))
      .then(
        () => callback(),
        (error: Error) => {
          this.fail(error);
          callback();
        },
      );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.io
      .catch(() => {})
      .then(() => {
        const file = this.file;
        this.file = undefined;
        return file?.close();
      })
      .catch(() => {})
      .finally(() => {
        this.giveBack();
        callback(error);
      });
  }

  /** Waits for the data set to be on disk (fsynced); resolves with what was written or a refusal. */
  async finish(): Promise<SpooledFile | { refusal: SpoolRefusal; error?: Error }> {
    if (!this.writableFinished) {
      await new Promise<void>((resolve) => {
        this.once("finish", resolve);
        this.once("error", () => resolve());
      });
    }
    await this.io.catch(() => {});
    await this.file?.close().catch(() => {});
    this.file = undefined;
    if (this.refusal) {
      this.giveBack();
      await unlink(this.tmpPath).catch(() => {});
      return { refusal: this.refusal, error: this.failure };
    }
    const whole = this.inWhole ? this.whole?.subarray(0, this.size) : undefined;
    const head = whole
      ? whole.subarray(0, Math.min(HEAD_BYTES, this.size))
      : Buffer.concat(this.headChunks, this.headLength);
    const tail = whole ? whole.subarray(Math.max(0, this.size - TAIL_BYTES)) : this.tail;
    let released = false;
    return {
      tmpPath: this.tmpPath,
      digest: this.hash.digest(),
      sizeBytes: this.size,
      head,
      tail,
      isWholeFile: head.length === this.size,
      ...(whole ? { whole } : {}),
      release: () => {
        if (released) return;
        released = true;
        this.giveBack();
      },
    };
  }

  /** Drops a half-received data set (association aborted or closed mid-transfer). */
  async discard(): Promise<void> {
    if (!this.closed) {
      const closed = new Promise((resolve) => this.once("close", resolve));
      this.destroy();
      await closed;
    }
    await unlink(this.tmpPath).catch(() => {});
  }

  /** Hashes and keeps one chunk, and starts a write once enough has gathered. */
  private take(chunk: Buffer): void {
    if (this.refusal) return;
    if (this.size + chunk.length > this.maxBytes) {
      this.refusal = "instance-too-large";
      return;
    }
    const whole = this.inWhole ? this.whole : undefined;
    if (whole && this.size + chunk.length <= whole.length) {
      // Hashed with the piece it belongs to when that is written (one call per WRITE_BYTES).
      chunk.copy(whole, this.size);
      this.size += chunk.length;
    } else {
      if (whole) this.leaveWhole(whole);
      this.hash.update(chunk);
      this.keepOutside(chunk);
    }
    this.flush(false);
  }

  /**
   * The object outgrows its pooled buffer: what the buffer holds goes to the file, its head and
   * tail are kept as they would have been, and the rest streams through fresh memory.
   */
  private leaveWhole(whole: Buffer): void {
    this.inWhole = false;
    if (this.queued < this.size) this.writeFromWhole(whole);
    const head = Buffer.from(whole.subarray(0, Math.min(HEAD_BYTES, this.size)));
    this.headChunks.push(head);
    this.headLength = head.length;
    this.tail = Buffer.from(whole.subarray(Math.max(0, this.size - TAIL_BYTES), this.size));
  }

  /** A chunk of an object that is not kept whole: copied into fresh memory; head and tail kept. */
  private keepOutside(chunk: Buffer): void {
    const copy = Buffer.from(chunk);
    if (this.headLength < HEAD_BYTES) {
      const part = copy.subarray(0, HEAD_BYTES - this.headLength);
      this.headChunks.push(part);
      this.headLength += part.length;
    }
    this.tail =
      copy.length >= TAIL_BYTES
        ? copy.subarray(copy.length - TAIL_BYTES)
        : Buffer.concat([this.tail, copy]).subarray(-TAIL_BYTES);
    this.pending.push(copy);
    this.pendingBytes += copy.length;
    this.size += copy.length;
  }

  /** Starts a write of what has gathered: at WRITE_BYTES, or all of it when `all`. */
  private flush(all: boolean): void {
    if (this.whole && this.inWhole) {
      const ready = this.size - this.queued;
      if (ready > 0 && (all || ready >= WRITE_BYTES)) this.writeFromWhole(this.whole);
      return;
    }
    if (this.pendingBytes > 0 && (all || this.pendingBytes >= WRITE_BYTES)) {
      const chunks = this.pending;
      this.pending = [];
      this.pendingBytes = 0;
      this.queueWrite(chunks);
    }
  }

  /** Hashes what the pooled buffer holds beyond the last write, and writes it. */
  private writeFromWhole(whole: Buffer): void {
    const piece = whole.subarray(this.queued, this.size);
    this.hash.update(piece);
    this.queueWrite([piece]);
  }

  private queueWrite(chunks: Buffer[]): void {
    const position = this.queued;
    for (const chunk of chunks) this.queued += chunk.length;
    this.io = this.io.then(async () => {
      if (!this.file || this.refusal) return;
      try {
        // libuv writes every buffer (it loops over short writes), or the call fails.
        await this.file.writev(chunks, position);
      } catch (error) {
        this.fail(error as Error);
      }
    });
  }

  /** Returns the pooled buffer once nothing reads or writes it any more. */
  private giveBack(): void {
    const whole = this.whole;
    if (!whole) return;
    this.whole = undefined;
    void this.io.finally(() => this.pool?.give(whole));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    const code = (error as NodeJS.ErrnoException).code;
    this.refusal ??= code === "ENOSPC" || code === "EDQUOT" ? "disk-full" : "write-failed";
  }
}

/** A spool path would leave SPOOL_DIR, or a UID is not a UID: never written. */
export class UnsafeSpoolPathError extends Error {
  override name = "UnsafeSpoolPathError";
}

/**
 * Final location of an instance in the spool. Each part must pass the DICOM UID grammar (digits
 * and dots, so never `..` or `/`), and the resolved path must lie inside SPOOL_DIR: a hostile UID
 * cannot make kneegrade write anywhere else.
 */
export function spoolPathFor(
  spoolDir: string,
  uids: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string },
): string {
  for (const name of ["studyInstanceUid", "seriesInstanceUid", "sopInstanceUid"] as const) {
    if (!isDicomUid(uids[name])) throw new UnsafeSpoolPathError(`${name} is not a valid DICOM UID`);
  }
  const root = resolve(spoolDir);
  const path = resolve(
    root,
    uids.studyInstanceUid,
    uids.seriesInstanceUid,
    `${uids.sopInstanceUid}.dcm`,
  );
  if (!path.startsWith(`${root}${sep}`)) {
    throw new UnsafeSpoolPathError("spool path outside SPOOL_DIR");
  }
  return path;
}

/** Series directories known to exist (bounded; a miss only costs one mkdir). */
const knownDirs = new Set<string>();

/** Atomically moves a spooled file into place and makes the rename durable. */
export async function commitSpoolFile(tmpPath: string, finalPath: string): Promise<void> {
  const dir = finalPath.slice(0, finalPath.lastIndexOf("/"));
  if (!knownDirs.has(dir)) {
    await mkdir(dir, { recursive: true });
    if (knownDirs.size > 10_000) knownDirs.clear();
    knownDirs.add(dir);
  }
  try {
    await rename(tmpPath, finalPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    // The directory went away since we made it (clean-up of old studies): make it again.
    await mkdir(dir, { recursive: true });
    await rename(tmpPath, finalPath);
  }
  const handle = await open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Prepares the spool and removes half-received files left by a crash (never acknowledged). */
export async function prepareSpool(spoolDir: string): Promise<number> {
  const incoming = join(spoolDir, INCOMING_DIR);
  await mkdir(incoming, { recursive: true });
  const leftovers = (await readdir(incoming)).filter((f) => f.endsWith(".part"));
  await Promise.all(leftovers.map((f) => rm(join(incoming, f), { force: true })));
  return leftovers.length;
}

/** Free space for unprivileged writers on the spool's file system, in bytes (0 if unknown). */
export function freeSpoolBytesSync(spoolDir: string): number {
  try {
    const s = statfsSync(spoolDir);
    return s.bavail * s.bsize;
  } catch {
    return 0;
  }
}
