import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeFileMetaInformation, instanceDigest } from "@kneegrade/dicom";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { INCOMING_DIR, ObjectBufferPool, type SpooledFile, SpoolWriter } from "./spool.ts";

const META = {
  mediaStorageSopClassUid: "1.2.840.10008.5.1.4.1.1.1",
  mediaStorageSopInstanceUid: "1.2.3.4.5",
  transferSyntaxUid: "1.2.840.10008.1.2.1",
  sourceAeTitle: "MODALITY",
};
const META_BYTES = encodeFileMetaInformation(META);

let spool: string;
beforeEach(async () => {
  spool = await mkdtemp(join(tmpdir(), "kneegrade-spool-"));
  await mkdir(join(spool, INCOMING_DIR));
});
afterEach(async () => {
  await rm(spool, { recursive: true, force: true });
});

/** A data set of `n` bytes, different for each `seed`. */
function dataSet(n: number, seed: number): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));
}

/**
 * Feeds `data` to a writer as the receive path does: each chunk is a view of one reused buffer
 * that is overwritten as soon as `write` returns.
 */
async function receive(writer: SpoolWriter, data: Buffer, chunkBytes: number) {
  const reused = Buffer.alloc(chunkBytes);
  for (let pos = 0; pos < data.length; pos += chunkBytes) {
    const n = data.copy(reused, 0, pos, pos + chunkBytes);
    expect(writer.write(reused.subarray(0, n))).toBe(true);
    reused.fill(0xee);
  }
  writer.end();
  const file = await writer.finish();
  if ("refusal" in file) throw new Error(`refused: ${file.refusal}`);
  return file;
}

async function expectFile(file: SpooledFile, data: Buffer) {
  const expected = Buffer.concat([META_BYTES, data]);
  expect((await readFile(file.tmpPath)).equals(expected)).toBe(true);
  expect(file.sizeBytes).toBe(expected.length);
  expect(file.digest).toBe(instanceDigest(expected));
  expect(file.head.equals(expected.subarray(0, 256 * 1024))).toBe(true);
  expect(file.tail.equals(expected.subarray(-1024))).toBe(true);
  expect(file.isWholeFile).toBe(expected.length <= 256 * 1024);
  return expected;
}

describe("SpoolWriter", () => {
  it("keeps an object that fits a pooled buffer whole in memory, and on disk byte for byte", async () => {
    const pool = new ObjectBufferPool(4 * 1024 * 1024, 1);
    const data = dataSet(3 * 1024 * 1024 + 777, 1);
    const file = await receive(
      new SpoolWriter(spool, META, 64 * 1024 * 1024, undefined, pool),
      data,
      16_390,
    );
    const expected = await expectFile(file, data);
    expect(file.whole?.equals(expected)).toBe(true);
    file.release();
  });

  it("streams through fresh memory without a pooled buffer, and past one it outgrows", async () => {
    const data = dataSet(2 * 1024 * 1024 + 5, 2);
    const noPool = await receive(new SpoolWriter(spool, META, 64 * 1024 * 1024), data, 65_536);
    await expectFile(noPool, data);
    expect(noPool.whole).toBeUndefined();

    // A pooled buffer of 1 MiB: the object starts in it and goes on in fresh memory.
    const pool = new ObjectBufferPool(1024 * 1024, 1);
    const writer = new SpoolWriter(spool, META, 64 * 1024 * 1024, undefined, pool);
    const outgrown = await receive(writer, data, 100_000);
    await expectFile(outgrown, data);
    expect(outgrown.whole).toBeUndefined();
    outgrown.release();
  });

  it("lends each pooled buffer to one object at a time and reuses it once released", async () => {
    const pool = new ObjectBufferPool(1024 * 1024, 1);
    const a = dataSet(300_000, 3);
    const b = dataSet(200_000, 4);
    const first = new SpoolWriter(spool, META, 1e9, undefined, pool);
    // The only buffer is lent to `first`: `second` streams through fresh memory.
    const second = new SpoolWriter(spool, META, 1e9, undefined, pool);
    const fileB = await receive(second, b, 16_384);
    const fileA = await receive(first, a, 16_384);
    expect(fileA.whole).toBeDefined();
    expect(fileB.whole).toBeUndefined();
    await expectFile(fileA, a);
    await expectFile(fileB, b);
    const lent = fileA.whole!.buffer;
    fileA.release();
    fileB.release();
    // Given back only after its last write: then the next object gets the same memory.
    await new Promise((resolve) => setTimeout(resolve, 10));
    const third = await receive(new SpoolWriter(spool, META, 1e9, undefined, pool), b, 16_384);
    expect(third.whole?.buffer).toBe(lent);
    await expectFile(third, b);
    third.release();
  });

  it("refuses an object beyond the size limit and removes what it wrote", async () => {
    const pool = new ObjectBufferPool(1024 * 1024, 1);
    const writer = new SpoolWriter(spool, META, 100_000, undefined, pool);
    for (let i = 0; i < 10; i++) writer.write(dataSet(16_384, i));
    writer.end();
    expect(await writer.finish()).toMatchObject({ refusal: "instance-too-large" });
    expect(await readdir(join(spool, INCOMING_DIR))).toEqual([]);
    // Its buffer went back to the pool.
    await new Promise((resolve) => setTimeout(resolve, 10));
    const next = await receive(
      new SpoolWriter(spool, META, 1e9, undefined, pool),
      dataSet(10, 5),
      4,
    );
    expect(next.whole).toBeDefined();
    next.release();
  });

  it("drops a half-received object on discard", async () => {
    const writer = new SpoolWriter(spool, META, 1e9, undefined, new ObjectBufferPool(1024, 1));
    writer.write(dataSet(5000, 6));
    await writer.discard();
    expect(await readdir(join(spool, INCOMING_DIR))).toEqual([]);
  });
});
