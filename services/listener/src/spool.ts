/**
 * The spool: where received objects are kept, one Part 10 file per instance at
 * `<SPOOL_DIR>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`.
 *
 * A C-STORE data set is streamed to `<SPOOL_DIR>/.incoming/` as it arrives (never held whole in
 * memory), hashed on the way, fsynced, and only then renamed into place; the directory is fsynced
 * too, so a success status is never sent for bytes that a power cut could take back.
 */
import { createHash, randomUUID } from "node:crypto";
import { constants as fsConstants, statfsSync } from "node:fs";
import { type FileHandle, mkdir, open, readdir, rename, rm, unlink } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { Writable } from "node:stream";
import { encodeFileMetaInformation, type FileMetaInformation, isDicomUid } from "@kneegrade/dicom";

/** Enough for the header of any ordinary radiograph; larger headers fall back to a file read. */
const HEAD_BYTES = 256 * 1024;
/** The end of the data set, where encapsulated pixel data must be terminated. */
const TAIL_BYTES = 1024;

export const INCOMING_DIR = ".incoming";

export interface SpooledFile {
  tmpPath: string;
  sha256: string;
  sizeBytes: number;
  /** The first bytes of the file, for reading the header without another disk read. */
  head: Buffer;
  /** The last bytes of the file, to tell a complete data set from a truncated one. */
  tail: Buffer;
  isWholeFile: boolean;
}

/** Why bytes were dropped instead of kept; answered with "out of resources". */
export type SpoolRefusal = "instance-too-large" | "disk-full" | "disk-watermark" | "write-failed";

/**
 * A Writable that dcmjs-dimse fills with one C-STORE data set. It never throws back into the
 * DIMSE layer: a failure is remembered and reported by `finish()`, so the peer gets a status.
 */
export class SpoolWriter extends Writable {
  readonly tmpPath: string;
  private file?: FileHandle;
  private readonly hash = createHash("sha256");
  private readonly headChunks: Buffer[] = [];
  private headLength = 0;
  private tail = Buffer.alloc(0);
  private size = 0;
  refusal?: SpoolRefusal;
  failure?: Error;

  constructor(
    spoolDir: string,
    private readonly meta: FileMetaInformation,
    private readonly maxBytes: number,
    /** Set when the instance is refused before its first byte (the disk watermark). */
    refusal?: SpoolRefusal,
  ) {
    super({ highWaterMark: 4 * 1024 * 1024 });
    this.refusal = refusal;
    this.tmpPath = join(spoolDir, INCOMING_DIR, `${randomUUID()}.part`);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    if (this.refusal) {
      callback();
      return;
    }
    open(this.tmpPath, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o640)
      .then(async (file) => {
        this.file = file;
        await this.append([encodeFileMetaInformation(this.meta)]);
        callback();
      })
      .catch((error: Error) => {
        this.fail(error);
        callback();
      });
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ) {
    this.writeChunks([chunk], callback);
  }

  /**
   * dcmjs-dimse hands over one PDV at a time: what has queued up goes to the file in one gathered
   * write, without concatenating it first.
   */
  override _writev(
    chunks: { chunk: Buffer; encoding: BufferEncoding }[],
    callback: (error?: Error | null) => void,
  ): void {
    this.writeChunks(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  private writeChunks(chunks: Buffer[], callback: (error?: Error | null) => void): void {
    if (this.refusal) {
      callback();
      return;
    }
    let length = 0;
    for (const chunk of chunks) length += chunk.length;
    if (this.size + length > this.maxBytes) {
      this.refusal = "instance-too-large";
      callback();
      return;
    }
    this.append(chunks).then(
      () => callback(),
      (error: Error) => {
        this.fail(error);
        callback();
      },
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    const file = this.file;
    if (!file || this.refusal) {
      callback();
      return;
    }
    file.sync().then(
      () => callback(),
      (error: Error) => {
        this.fail(error);
        callback();
      },
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const file = this.file;
    this.file = undefined;
    (file ? file.close() : Promise.resolve()).finally(() => callback(error));
  }

  /** Waits for the data set to be on disk (fsynced); resolves with what was written or a refusal. */
  async finish(): Promise<SpooledFile | { refusal: SpoolRefusal; error?: Error }> {
    if (!this.writableFinished) {
      await new Promise<void>((resolve) => {
        this.once("finish", resolve);
        this.once("error", () => resolve());
      });
    }
    await this.file?.close().catch(() => {});
    this.file = undefined;
    if (this.refusal) {
      await unlink(this.tmpPath).catch(() => {});
      return { refusal: this.refusal, error: this.failure };
    }
    const head = Buffer.concat(this.headChunks, this.headLength);
    return {
      tmpPath: this.tmpPath,
      sha256: this.hash.digest("hex"),
      sizeBytes: this.size,
      head,
      tail: this.tail,
      isWholeFile: head.length === this.size,
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

  private async append(chunks: Buffer[]): Promise<void> {
    if (!this.file) return;
    for (const chunk of chunks) {
      this.hash.update(chunk);
      if (this.headLength < HEAD_BYTES) {
        const part = chunk.subarray(0, HEAD_BYTES - this.headLength);
        this.headChunks.push(Buffer.from(part));
        this.headLength += part.length;
      }
      this.size += chunk.length;
    }
    const last = chunks[chunks.length - 1];
    if (last && last.length >= TAIL_BYTES) {
      this.tail = Buffer.from(last.subarray(last.length - TAIL_BYTES));
    } else {
      const parts: Buffer[] = [];
      let n = 0;
      for (let i = chunks.length - 1; i >= 0 && n < TAIL_BYTES; i--) {
        parts.unshift(chunks[i]!);
        n += chunks[i]!.length;
      }
      if (n < TAIL_BYTES) parts.unshift(this.tail);
      this.tail = Buffer.from(Buffer.concat(parts).subarray(-TAIL_BYTES));
    }
    // libuv writes every buffer (it loops over short writes), or the call fails.
    await this.file.writev(chunks);
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
