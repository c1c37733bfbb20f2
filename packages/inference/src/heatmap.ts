/**
 * The class heat map of a knee: where the members' tokens voted for the predicted grade, brought to
 * the crop's size by bilinear upsampling and scaled to 0..1 per crop (docs/GRADING.md, "Heat map").
 */
import type { Heatmap, InputSize, RawMemberOutputs } from "./types.ts";

/**
 * The heat map of crop `i` for class `grade`: each token's probability of the grade (softmax of
 * its class logits over the classes, as the selector ranks tokens), bilinearly upsampled to the
 * input size (half-pixel centres, edges clamped: PyTorch's `interpolate(..., align_corners=False)`),
 * averaged over levels and members, then scaled to 0..1 for this crop between its 2nd and 98th
 * percentiles (clipped; all zeros when the map is flat).
 *
 * The raw grade channel is not used: the suppression loss drives every class logit of an
 * unselected token down together, so a token's raw logits mostly say how strongly it was
 * suppressed, not which grade it votes for; on the test model that map was as hot at the crop's
 * edges as over the joint, and a few strongly suppressed tokens set its minimum, so min–max
 * scaling left most of the crop hot.
 */
export function classHeatmap(
  raw: readonly RawMemberOutputs[],
  members: readonly { tokenOutputs: readonly string[] }[],
  i: number,
  grade: number,
  size: InputSize,
): Heatmap {
  const { height, width } = size;
  // Upsampling is linear: sum the maps of equal grid size first, then upsample each sum once.
  const grids = new Map<string, { h: number; w: number; sum: Float32Array }>();
  let maps = 0;
  for (const [m, r] of raw.entries()) {
    for (const out of members[m]!.tokenOutputs) {
      const { dims, data } = r.outputs[out]!;
      const [, k, h, w] = dims as [number, number, number, number];
      const key = `${h}x${w}`;
      let grid = grids.get(key);
      if (!grid) {
        grid = { h, w, sum: new Float32Array(h * w) };
        grids.set(key, grid);
      }
      addClassProbability(data, i * k * h * w, k, h * w, grade, grid.sum);
      maps++;
    }
  }
  const acc = new Float32Array(height * width);
  for (const { h, w, sum } of grids.values()) upsampleAdd(sum, 0, h, w, acc, height, width);
  for (let p = 0; p < acc.length; p++) acc[p] = acc[p]! / maps;
  return { width, height, data: robustUnit(acc, HEAT_LOW_PERCENTILE, HEAT_HIGH_PERCENTILE) };
}

/** Percentiles of a crop's heat that become 0 and 1 (values beyond them are clipped). */
export const HEAT_LOW_PERCENTILE = 2;
export const HEAT_HIGH_PERCENTILE = 98;

/**
 * Adds, per token, softmax over the `k` class maps of `data[at..]` (each `n` tokens, class-major)
 * at class `grade` to `sum`.
 */
export function addClassProbability(
  data: Float32Array,
  at: number,
  k: number,
  n: number,
  grade: number,
  sum: Float32Array,
): void {
  for (let p = 0; p < n; p++) {
    let hi = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < k; c++) hi = Math.max(hi, data[at + c * n + p]!);
    let total = 0;
    for (let c = 0; c < k; c++) total += Math.exp(data[at + c * n + p]! - hi);
    sum[p]! += Math.exp(data[at + grade * n + p]! - hi) / total;
  }
}

/**
 * `values` scaled so that their `low` and `high` percentiles (nearest rank) become 0 and 1,
 * clipped to 0..1; all zeros when those percentiles are equal. A few extreme pixels then neither
 * wash out the rest of the map nor make it all hot.
 */
export function robustUnit(values: Float32Array, low: number, high: number): Float32Array {
  const sorted = Float32Array.from(values).sort();
  const at = (q: number) => sorted[Math.round((q / 100) * (sorted.length - 1))]!;
  const lo = at(low);
  const span = at(high) - lo;
  return values.map((v) => (span > 0 ? Math.min(1, Math.max(0, (v - lo) / span)) : 0));
}

interface Axis {
  i0: Int32Array;
  i1: Int32Array;
  w: Float32Array;
}
const axes = new Map<string, Axis>();

/** Source indices and weights of a half-pixel bilinear resize from `n` to `size` samples. */
function axis(n: number, size: number): Axis {
  const key = `${n}>${size}`;
  let a = axes.get(key);
  if (!a) {
    a = { i0: new Int32Array(size), i1: new Int32Array(size), w: new Float32Array(size) };
    const scale = n / size;
    for (let o = 0; o < size; o++) {
      const src = Math.max(0, (o + 0.5) * scale - 0.5);
      const i0 = Math.min(Math.floor(src), n - 1);
      a.i0[o] = i0;
      a.i1[o] = Math.min(i0 + 1, n - 1);
      a.w[o] = src - i0;
    }
    axes.set(key, a);
  }
  return a;
}

/** Adds the bilinear resize of the h×w map at `src[offset..]` to the H×W `acc`. */
export function upsampleAdd(
  src: Float32Array,
  offset: number,
  h: number,
  w: number,
  acc: Float32Array,
  H: number,
  W: number,
): void {
  const ya = axis(h, H);
  const xa = axis(w, W);
  // Horizontal pass over the h source rows, then the vertical blend per output row.
  const rows = new Float32Array(h * W);
  for (let y = 0; y < h; y++) {
    const r = offset + y * w;
    for (let x = 0; x < W; x++) {
      const wx = xa.w[x]!;
      rows[y * W + x] = src[r + xa.i0[x]!]! * (1 - wx) + src[r + xa.i1[x]!]! * wx;
    }
  }
  for (let y = 0; y < H; y++) {
    const wy = ya.w[y]!;
    const r0 = ya.i0[y]! * W;
    const r1 = ya.i1[y]! * W;
    const o = y * W;
    for (let x = 0; x < W; x++) acc[o + x]! += rows[r0 + x]! * (1 - wy) + rows[r1 + x]! * wy;
  }
}
