/**
 * A member that takes a smaller input than the ensemble's crop sees the crop shrunk by a whole
 * factor: the mean of each factor × factor block — what the toolkit's area interpolation
 * (`F.interpolate(mode="area")`, models/data.py `to_input`) gives for a whole factor, so the
 * member sees what it was trained and checked on.
 */
import type { Crop } from "./runtime.ts";

/** The crop (`height` × `width`, row-major grey 0–255) shrunk `factor` times by block means. */
export function boxDownsample(
  crop: Crop,
  height: number,
  width: number,
  factor: number,
): Float32Array {
  if (!Number.isInteger(factor) || factor < 1 || height % factor || width % factor) {
    throw new RangeError(`cannot shrink ${width}x${height} by ${factor}: not a whole divisor`);
  }
  if (crop.length !== height * width) {
    throw new RangeError(
      `crop has ${crop.length} values, ${width}x${height} needs ${height * width}`,
    );
  }
  const h = height / factor;
  const w = width / factor;
  const out = new Float32Array(h * w);
  // Sum whole source rows into their output row (contiguous reads), then divide once.
  for (let y = 0; y < height; y++) {
    const src = y * width;
    const dst = Math.floor(y / factor) * w;
    for (let x = 0; x < width; x++) out[dst + Math.floor(x / factor)]! += crop[src + x]!;
  }
  const area = factor * factor;
  for (let p = 0; p < out.length; p++) out[p]! /= area;
  return out;
}
