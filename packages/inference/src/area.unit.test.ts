import { describe, expect, it } from "vitest";
import { areaResize } from "./area.ts";

const square = (n: number) => ({ height: n, width: n });

describe("areaResize", () => {
  it("gives the mean of each block for a whole factor", () => {
    // 4x6 → 2x3 by 2: each output is the mean of its 2x2 block.
    // biome-ignore format: one image row per line
    const crop = Uint8Array.from([
      0, 2, 10, 10, 255, 255,
      4, 6, 10, 11, 255, 0,
      1, 1, 7, 8, 100, 101,
      1, 1, 9, 10, 102, 103,
    ]);
    expect([...areaResize(crop, { height: 4, width: 6 }, { height: 2, width: 3 })]).toEqual([
      3, 10.25, 191.25, 1, 8.5, 101.5,
    ]);
    const ramp = Float32Array.from({ length: 36 }, (_, i) => i * 1.5);
    // Block (0,0): rows 0-2, cols 0-2 → values (r*6+c)*1.5, mean at r=1,c=1 → 7*1.5.
    expect([...areaResize(ramp, square(6), square(2))]).toEqual([10.5, 15, 37.5, 42]);
  });

  it("averages the overlapping cells PyTorch's area interpolation averages", () => {
    // 3 → 2: cells [0, 2) and [1, 3) on each axis.
    const src = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    expect([...areaResize(src, square(3), square(2))]).toEqual([3, 4, 6, 7]);
    // Rows 3 → 2 as above, columns 3 → 3 kept.
    expect([...areaResize(src, square(3), { height: 2, width: 3 })]).toEqual([
      2.5, 3.5, 4.5, 5.5, 6.5, 7.5,
    ]);
  });

  it("keeps an image at its own size and repeats pixels when enlarging", () => {
    const src = Float32Array.from({ length: 12 }, (_, i) => i * 1.5);
    expect([...areaResize(src, { height: 3, width: 4 }, { height: 3, width: 4 })]).toEqual([
      ...src,
    ]);
    expect([...areaResize([1, 2, 3, 4], square(2), square(4))]).toEqual([
      1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4,
    ]);
  });

  it("gives back an image whose pixels were repeated factor times", () => {
    const small = Uint8Array.from({ length: 12 }, (_, i) => (i * 37) % 256);
    const big = new Uint8Array(12 * 4);
    for (let y = 0; y < 6; y++)
      for (let x = 0; x < 8; x++) big[y * 8 + x] = small[(y >> 1) * 4 + (x >> 1)]!;
    expect([...areaResize(big, { height: 6, width: 8 }, { height: 3, width: 4 })]).toEqual([
      ...small,
    ]);
  });

  it("refuses an image of the wrong length or a size that is not one", () => {
    expect(() => areaResize(new Uint8Array(10), square(4), square(2))).toThrow(/needs 16/);
    expect(() => areaResize(new Uint8Array(16), square(4), square(0))).toThrow(/not an image size/);
    expect(() => areaResize(new Uint8Array(16), square(4), square(2.5))).toThrow(
      /not an image size/,
    );
  });
});
