import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { resampleLinear } from "./resample.ts";

const ramp = (w: number, h: number) => Uint8Array.from({ length: w * h }, (_, i) => (i % w) * 2);

describe("resampleLinear", () => {
  it("keeps an image of the same size", () => {
    const src = Uint8Array.from({ length: 7 * 5 }, (_, i) => (i * 37) % 256);
    expect(Array.from(resampleLinear(src, 7, 5, 7, 5))).toEqual(Array.from(src));
  });

  it("keeps a flat image flat, edges included", () => {
    const out = resampleLinear(new Uint8Array(40 * 30).fill(90), 40, 30, 11, 7);
    for (const v of out) expect(v).toBeCloseTo(90, 4);
  });

  it("reduces a ramp to the ramp at the output pixels' centres", () => {
    // Columns 0..79 hold 2x; output column i covers source columns [4i, 4i + 4): centre 4i + 1.5.
    const out = resampleLinear(ramp(80, 12), 80, 12, 20, 3);
    for (let i = 2; i < 18; i++) expect(out[i]).toBeCloseTo(2 * (4 * i + 1.5), 3);
  });

  it("averages over the reduction, not a point sample: a one-pixel stripe pattern becomes its mean", () => {
    const stripes = Uint8Array.from({ length: 60 * 60 }, (_, i) => (i % 2 ? 200 : 0));
    const out = resampleLinear(stripes, 60, 60, 15, 15);
    for (const v of out.subarray(15 * 2, 15 * 12)) expect(v).toBeGreaterThan(70);
    for (const v of out.subarray(15 * 2, 15 * 12)) expect(v).toBeLessThan(130);
  });

  it("resamples a rectangle as if it were cut out first (away from the image's edges)", () => {
    const src = Uint8Array.from({ length: 90 * 70 }, (_, i) => ((i * 7919) % 251) ^ (i >> 3));
    const rect = { x: 20, y: 15, width: 48, height: 36 };
    const cut = new Uint8Array(rect.width * rect.height);
    for (let y = 0; y < rect.height; y++) {
      cut.set(
        src.subarray((rect.y + y) * 90 + rect.x, (rect.y + y) * 90 + rect.x + rect.width),
        y * rect.width,
      );
    }
    const a = resampleLinear(src, 90, 70, 12, 9, rect);
    const b = resampleLinear(cut, rect.width, rect.height, 12, 9);
    // Interior pixels only: at the rectangle's border the first reads its neighbours, the second
    // repeats its edge.
    for (let y = 1; y < 8; y++) {
      for (let x = 1; x < 11; x++) expect(a[y * 12 + x]).toBeCloseTo(b[y * 12 + x]!, 3);
    }
  });

  it("is within a few grey levels of sharp's linear reduction (what the localiser used before)", async () => {
    const w = 375;
    const h = 300;
    const src = Uint8Array.from({ length: w * h }, (_, i) => {
      const x = i % w;
      const y = Math.floor(i / w);
      return Math.round(128 + 90 * Math.sin(x / 23) * Math.cos(y / 31));
    });
    for (const [ow, oh] of [
      [341, 273],
      [188, 150],
      [63, 50],
    ] as const) {
      const ours = resampleLinear(src, w, h, ow, oh);
      const theirs = await sharp(src, { raw: { width: w, height: h, channels: 1 } })
        .resize(ow, oh, { kernel: "linear", fit: "fill" })
        .toColourspace("b-w")
        .raw()
        .toBuffer();
      let worst = 0;
      for (let i = 0; i < ours.length; i++)
        worst = Math.max(worst, Math.abs(ours[i]! - theirs[i]!));
      expect(worst).toBeLessThan(4);
    }
  });

  it("reduces an image smaller than the filter's span (its mean, here)", () => {
    expect(Array.from(resampleLinear(Uint8Array.from([10, 20, 30, 40]), 2, 2, 1, 1))).toEqual([25]);
    // Centre 1, support 3: taps at -1..3 weigh 1/3, 2/3, 1, 2/3, 1/3; the edge pixels take the
    // weights of the taps beyond them, so all three weigh 1.
    const [v] = resampleLinear(Uint8Array.from([0, 30, 0]), 3, 1, 1, 1);
    expect(v).toBeCloseTo(10, 4);
  });
});
