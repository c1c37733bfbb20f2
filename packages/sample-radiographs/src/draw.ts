/**
 * What every composer here draws with: the canvas, a seeded generator (reproducible images) and
 * smoothstep.
 */

/** Grey 0..1 (metal above 1), row-major, before it is stored as 12-bit values. */
export interface Canvas {
  img: Float32Array;
  width: number;
  height: number;
}

/** Where a knee crop's square lies on the canvas, in pixels. */
export interface Square {
  cx: number;
  left: number;
  top: number;
  side: number;
}

/** mulberry32: a small deterministic generator in [0, 1), so a composed image is reproducible. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Smoothstep on 0..1: 0 below, 1 above, an S-curve between. */
export const smooth = (x: number) => (x <= 0 ? 0 : x >= 1 ? 1 : x * x * (3 - 2 * x));

/**
 * Calls `paint` for each pixel of `square` that lies on the canvas, with its place in the square
 * (`x`, `y`) and its index in the canvas (`i`).
 */
export function forEachPixelIn(
  { width, height }: Canvas,
  { left, top, side }: Square,
  paint: (x: number, y: number, i: number) => void,
): void {
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const gx = left + x;
      const gy = top + y;
      if (gx < 0 || gx >= width || gy < 0 || gy >= height) continue;
      paint(x, y, gy * width + gx);
    }
  }
}
