import { readdirSync } from "node:fs";
import { mulberry32 } from "@kneegrade/sample-radiographs";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { SHARED_DATA } from "../../../tests/helpers/paths.ts";
import { kneeTemplates } from "./localise.ts";
import { kneeScoreMap, OnnxCorrelator, zeroMeanUnitNorm } from "./ncc.ts";

const VAL = `${SHARED_DATA}knee-kl/val/`;

/** A real crop set into a larger noisy frame, as grey floats. */
async function scene(width: number, height: number, side: number, seed: number) {
  const dir = `${VAL}${seed % 5}`;
  const png = `${dir}/${readdirSync(dir).sort()[seed % 7]}`;
  const crop = await sharp(png).greyscale().resize(side, side).raw().toBuffer();
  const rand = mulberry32(seed);
  const img = Float32Array.from({ length: width * height }, () => 20 + 30 * rand());
  const x0 = Math.floor((width - side) / 2);
  const y0 = Math.floor((height - side) / 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) img[(y0 + y) * width + x0 + x] = crop[y * side + x]!;
  }
  return img;
}

describe("the onnxruntime correlator", () => {
  const correlator = new OnnxCorrelator();

  it("gives the JavaScript reference's knee scores, at every position and every other one", async () => {
    for (const [size, w, h, side] of [
      [24, 61, 47, 30],
      [64, 97, 96, 70],
    ] as const) {
      const t = kneeTemplates().find((x) => x.size === size && x.grades.length === 5)!;
      const img = await scene(w, h, side, size);
      for (const stride of [1, 2] as const) {
        const ref = kneeScoreMap(img, w, h, t, stride);
        const got = await correlator.scoreMap(img, w, h, t, stride);
        expect([got.width, got.height]).toEqual([ref.width, ref.height]);
        let worst = 0;
        let computed = 0;
        for (let i = 0; i < ref.map.length; i++) {
          worst = Math.max(worst, Math.abs(got.map[i]! - ref.map[i]!));
          if (ref.map[i]! !== -1) computed++;
        }
        expect(worst, `size ${size} stride ${stride}`).toBeLessThan(1e-4);
        // Stride 2 leaves the odd positions at -1 in both.
        const expected =
          stride === 1
            ? ref.width * ref.height
            : Math.ceil(ref.width / 2) * Math.ceil(ref.height / 2);
        expect(computed).toBe(expected);
      }
    }
  });

  it("equals the reference for odd and even template and image sizes, every position and every other one", async () => {
    const rand = mulberry32(11);
    const noise = (length: number) => Float32Array.from({ length }, () => rand());
    for (const [n, w, h] of [
      [6, 31, 27],
      [7, 30, 41],
      [8, 8, 9],
      [10, 23, 10],
    ] as const) {
      const t = {
        size: n,
        grades: [0, 1, 2, 3, 4],
        mean: zeroMeanUnitNorm(noise(n * n)),
        vgrad: zeroMeanUnitNorm(noise(n * n)),
        hgrad: zeroMeanUnitNorm(noise(n * n)),
      };
      const img = Float32Array.from(noise(w * h), (v) => 255 * v);
      for (const stride of [1, 2] as const) {
        const ref = kneeScoreMap(img, w, h, t, stride);
        const got = await correlator.scoreMap(img, w, h, t, stride);
        expect([got.width, got.height]).toEqual([ref.width, ref.height]);
        // An odd template is correlated at every position (the stride-2 graph needs an even one).
        const worst = ref.map.reduce(
          (m, v, i) => (v === -1 && n % 2 ? m : Math.max(m, Math.abs(got.map[i]! - v))),
          0,
        );
        expect(worst, `n ${n}, ${w}×${h}, stride ${stride}`).toBeLessThan(1e-4);
      }
    }
  });

  it("scores a flat window -1 (no structure to match), as the reference does", async () => {
    const t = kneeTemplates().find((x) => x.size === 24 && x.grades.length === 5)!;
    const flat = new Float32Array(40 * 30).fill(90);
    const got = await correlator.scoreMap(flat, 40, 30, t);
    expect(new Set(got.map)).toEqual(new Set([-1]));
  });

  it("treats each feature's flat windows as the reference does, beside structured ones", async () => {
    // Left: constant (every feature flat); middle: a ramp (intensity varies, both gradients are
    // constant, so flat); right: noise.
    const rand = mulberry32(5);
    const [w, h, n] = [60, 26, 8];
    const img = Float32Array.from({ length: w * h }, (_, i) => {
      const x = i % w;
      return x < 20 ? 70 : x < 40 ? 3 * x : 255 * rand();
    });
    const noise = () => Float32Array.from({ length: n * n }, () => rand());
    const t = {
      size: n,
      grades: [0, 1, 2, 3, 4],
      mean: zeroMeanUnitNorm(noise()),
      vgrad: zeroMeanUnitNorm(noise()),
      hgrad: zeroMeanUnitNorm(noise()),
    };
    for (const stride of [1, 2] as const) {
      const ref = kneeScoreMap(img, w, h, t, stride);
      const got = await correlator.scoreMap(img, w, h, t, stride);
      const worst = ref.map.reduce((m, v, i) => Math.max(m, Math.abs(got.map[i]! - v)), 0);
      expect(worst, `stride ${stride}`).toBeLessThan(1e-4);
      expect(ref.map[0]).toBe(-1); // all flat
      expect(ref.map[25]).toBeLessThan(-0.5); // the ramp: two of three features flat
    }
  });
});
