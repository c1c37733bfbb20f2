import { describe, expect, it } from "vitest";
import { boxDownsample } from "./downsample.ts";

describe("boxDownsample", () => {
  it("gives the mean of each block", () => {
    // 4x6 → 2x3 by 2: each output is the mean of its 2x2 block.
    // biome-ignore format: one image row per line
    const crop = Uint8Array.from([
      0, 2, 10, 10, 255, 255,
      4, 6, 10, 11, 255, 0,
      1, 1, 7, 8, 100, 101,
      1, 1, 9, 10, 102, 103,
    ]);
    expect([...boxDownsample(crop, 4, 6, 2)]).toEqual([3, 10.25, 191.25, 1, 8.5, 101.5]);
  });

  it("keeps a crop at factor 1 and shrinks by 3", () => {
    const crop = Float32Array.from({ length: 36 }, (_, i) => i * 1.5);
    expect([...boxDownsample(crop, 6, 6, 1)]).toEqual([...crop]);
    const third = boxDownsample(crop, 6, 6, 3);
    // Block (0,0): rows 0-2, cols 0-2 → values (r*6+c)*1.5, mean at r=1,c=1 → 7*1.5.
    expect([...third]).toEqual([10.5, 15, 37.5, 42]);
  });

  it("gives back an image whose pixels were repeated factor times", () => {
    const small = Uint8Array.from({ length: 12 }, (_, i) => (i * 37) % 256);
    const big = new Uint8Array(12 * 4);
    for (let y = 0; y < 6; y++)
      for (let x = 0; x < 8; x++) big[y * 8 + x] = small[(y >> 1) * 4 + (x >> 1)]!;
    expect([...boxDownsample(big, 6, 8, 2)]).toEqual([...small]);
  });

  it("refuses a factor that does not divide the crop, or a crop of the wrong length", () => {
    expect(() => boxDownsample(new Uint8Array(25), 5, 5, 2)).toThrow(/not a whole divisor/);
    expect(() => boxDownsample(new Uint8Array(10), 4, 4, 2)).toThrow(/needs 16/);
  });
});
