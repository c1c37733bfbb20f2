/**
 * Area-aware linear resampling of a grey image (or a rectangle of it) into float32, for the
 * localiser's small reductions: the coarse pyramid's levels and refinement's windows.
 *
 * The filter is the triangle ("linear") kernel whose support widens with the reduction — what
 * sharp/libvips and Pillow do for a linear downscale — so a reduced image is an average of its
 * source, not a point sample of it. Written here rather than called through sharp because the
 * localiser makes ≈ 50 of these per radiograph, most a few thousand pixels: sharp's fixed cost per
 * call (≈ 1.1–1.6 ms measured, a libvips pipeline and a thread hand-off each) was more than half of
 * the localisation time, where the arithmetic itself takes a fraction of a millisecond. Large
 * reductions (the full radiograph to the localiser's base) still go through sharp.
 */

/** One axis' taps: for output i, weights[i·taps + k] applies to source index first[i] + k. */
interface Taps {
  first: Int32Array;
  weights: Float32Array;
  taps: number;
}

/**
 * Taps mapping `outSize` samples onto `inSize` source samples from `offset` (the rectangle's start;
 * sources outside 0..limit-1 are clamped to the edge). Pixel centres are aligned: output i covers
 * source [offset + i·scale, offset + (i+1)·scale).
 */
function axisTaps(inSize: number, outSize: number, offset: number, limit: number): Taps {
  const scale = inSize / outSize;
  const support = Math.max(1, scale); // the kernel's half-width in source pixels
  // The kernel is non-zero on the open interval centre ± support: at most ⌈2·support⌉ pixels,
  // fewer when the image is smaller than that.
  const span = Math.ceil(2 * support);
  const taps = Math.min(span, limit);
  const first = new Int32Array(outSize);
  const weights = new Float32Array(outSize * taps);
  for (let i = 0; i < outSize; i++) {
    const centre = offset + (i + 0.5) * scale - 0.5;
    const start = Math.floor(centre - support) + 1;
    // Sources outside the image take the edge pixel's value: their weight goes onto it.
    const lo = Math.max(0, Math.min(limit - taps, start));
    let total = 0;
    for (let k = 0; k < span; k++) {
      const w = Math.max(0, 1 - Math.abs(start + k - centre) / support);
      const src = Math.min(limit - 1, Math.max(0, start + k));
      weights[i * taps + src - lo]! += w;
      total += w;
    }
    for (let k = 0; k < taps; k++) weights[i * taps + k] = weights[i * taps + k]! / total;
    first[i] = lo;
  }
  return { first, weights, taps };
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * `rect` of the `width`-wide image `src` (whole image by default) resampled to `outWidth` ×
 * `outHeight`, as float32 grey levels.
 */
export function resampleLinear(
  src: Uint8Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
  rect: Rect = { x: 0, y: 0, width, height },
): Float32Array {
  const tx = axisTaps(rect.width, outWidth, rect.x, width);
  const ty = axisTaps(rect.height, outHeight, rect.y, height);
  // Vertical pass first, over the rectangle's columns only: its inner loop runs along contiguous
  // rows (the fast direction for a typed array), and it leaves outHeight rows for the horizontal
  // pass's gathers.
  const colLo = tx.first[0]!;
  const cols = tx.first[outWidth - 1]! + tx.taps - colLo;
  const mid = new Float32Array(outHeight * cols);
  const yFirst = ty.first;
  const yWeights = ty.weights;
  const yTaps = ty.taps;
  for (let j = 0; j < outHeight; j++) {
    const midRow = j * cols;
    for (let k = 0; k < yTaps; k++) {
      const w = yWeights[j * yTaps + k]!;
      if (w === 0) continue;
      const s = (yFirst[j]! + k) * width + colLo;
      for (let i = 0; i < cols; i++) mid[midRow + i] = mid[midRow + i]! + w * src[s + i]!;
    }
  }
  const out = new Float32Array(outWidth * outHeight);
  const xFirst = tx.first;
  const xWeights = tx.weights;
  const xTaps = tx.taps;
  for (let j = 0; j < outHeight; j++) {
    const midRow = j * cols - colLo;
    const outRow = j * outWidth;
    for (let i = 0; i < outWidth; i++) {
      const s = midRow + xFirst[i]!;
      const w = i * xTaps;
      let acc = 0;
      for (let k = 0; k < xTaps; k++) acc += xWeights[w + k]! * mid[s + k]!;
      out[outRow + i] = acc;
    }
  }
  return out;
}
