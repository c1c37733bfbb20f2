/**
 * Area resampling, the model-input contract's one resize: exactly the toolkit's `to_input`
 * (models/data.py, PyTorch `F.interpolate(mode="area")`, i.e. adaptive average pooling). Output
 * cell i of an axis averages input cells floor(i·n/m) … ceil((i+1)·n/m)−1 of that axis; for a
 * whole factor that is the mean of each factor × factor block. The knee crop (224 px) is brought
 * to the ensemble's input with it, and a member that takes a smaller input than the ensemble's
 * crop sees the crop shrunk with it, so every member sees what it was trained and checked on.
 */
import type { InputSize } from "./types.ts";

/** `src` (`from`, row-major grey) resampled to `to` by area averaging. */
export function areaResize(src: ArrayLike<number>, from: InputSize, to: InputSize): Float32Array {
  for (const s of [from, to]) {
    if (!Number.isInteger(s.height) || !Number.isInteger(s.width) || s.height < 1 || s.width < 1)
      throw new RangeError(`not an image size: ${s.width}x${s.height}`);
  }
  if (src.length !== from.height * from.width) {
    throw new RangeError(
      `image has ${src.length} values, ${from.width}x${from.height} needs ${from.height * from.width}`,
    );
  }
  const rows = cells(from.height, to.height);
  const cols = cells(from.width, to.width);
  const out = new Float32Array(to.height * to.width);
  for (let y = 0; y < to.height; y++) {
    const [y0, y1] = rows[y]!;
    for (let x = 0; x < to.width; x++) {
      const [x0, x1] = cols[x]!;
      let sum = 0;
      for (let sy = y0; sy < y1; sy++) {
        const row = sy * from.width;
        for (let sx = x0; sx < x1; sx++) sum += src[row + sx]!;
      }
      out[y * to.width + x] = sum / ((y1 - y0) * (x1 - x0));
    }
  }
  return out;
}

/** The input range [start, end) that each of the `m` output cells of an `n`-cell axis averages. */
function cells(n: number, m: number): Array<readonly [number, number]> {
  return Array.from(
    { length: m },
    (_, i) => [Math.floor((i * n) / m), Math.ceil(((i + 1) * n) / m)] as const,
  );
}
