/**
 * Finds knee joints in a full AP/PA radiograph by normalised cross-correlation (NCC) with a mean
 * knee crop (assets/knee-template.json, built by `python3 -m models.knee_template` from the training
 * crops). The matched square is the crop the model expects: joint centred, femur above, tibia below.
 *
 * Search: the display image is reduced so that a candidate knee square becomes the template's
 * coarse size, for a range of physical sizes (60–170 mm when the pixel spacing is known, otherwise
 * 8–70 % of the shorter image side); the best local maxima over all scales are kept with
 * non-maximum suppression, then refined at the template's full size. At most two knees (bilateral).
 */
import { readFileSync } from "node:fs";
import sharp from "sharp";
import { z } from "zod";

const Template = z.object({
  schema_version: z.literal(2),
  kind: z.literal("kneegrade-knee-template"),
  templates: z.array(
    z.object({
      size: z.number().int().positive(),
      grades: z.array(z.number().int().min(0).max(4)),
      mean: z.array(z.number()),
      vgrad: z.array(z.number()),
      hgrad: z.array(z.number()),
    }),
  ),
});

/** A template pair at one size, each zero-mean and unit-norm (ready for NCC). */
export interface KneeTemplate {
  size: number;
  /** The KL grades whose crops it averages. */
  grades: number[];
  mean: Float32Array;
  vgrad: Float32Array;
  hgrad: Float32Array;
}

let cached: KneeTemplate[] | undefined;

/**
 * The bundled templates: all grades at 24 px (coarse search) and 64 px (refinement), and each
 * grade alone at 64 px (scoring: a severe knee matches the all-grade mean less well).
 */
export function kneeTemplates(): KneeTemplate[] {
  if (!cached) {
    const path = new URL("../assets/knee-template.json", import.meta.url);
    const doc = Template.parse(JSON.parse(readFileSync(path, "utf8")));
    cached = doc.templates.map((t) => {
      if ([t.mean, t.vgrad, t.hgrad].some((a) => a.length !== t.size ** 2)) {
        throw new Error(`${path}: template ${t.size} has the wrong length`);
      }
      return {
        size: t.size,
        grades: t.grades,
        mean: zeroMeanUnitNorm(Float32Array.from(t.mean)),
        vgrad: zeroMeanUnitNorm(Float32Array.from(t.vgrad)),
        hgrad: zeroMeanUnitNorm(Float32Array.from(t.hgrad)),
      };
    });
  }
  return cached;
}

function allGrades(size: number): KneeTemplate {
  const t = kneeTemplates().find((x) => x.size === size && x.grades.length === 5);
  if (!t) throw new Error(`no all-grade knee template of size ${size}`);
  return t;
}

export interface GreyImage {
  width: number;
  height: number;
  /** 8-bit display grey, 0 = black. */
  data: Uint8Array;
}

export interface KneeCandidate {
  /** Centre of the joint square, image pixels. */
  cx: number;
  cy: number;
  /** Side of the square, image pixels. */
  side: number;
  /** NCC with the template, -1..1. */
  score: number;
}

export interface LocaliseOptions {
  /** mm per pixel (mean of row and column spacing); null when the header has none. */
  spacingMm?: number | null;
  /** Minimum knee score (default 0.45). Below it the image has no knee we can grade. */
  minScore?: number;
  /**
   * Minimum score of a second knee beside a first one (default 0.42): at the first knee's height,
   * of its size and clearly beside it — the geometry is evidence enough for a lower score.
   */
  pairMinScore?: number;
}

export interface LocaliseResult {
  knees: KneeCandidate[];
  /** The best match in the image whether or not it counts as a knee (for the refusal reason). */
  best: KneeCandidate | null;
  minScore: number;
}

export const DEFAULT_MIN_SCORE = 0.45;
export const DEFAULT_PAIR_MIN_SCORE = 0.42;
const COARSE = 24;
const FINE = 64;
const SCALE_STEP = 1.1;

function zeroMeanUnitNorm(v: Float32Array): Float32Array {
  let mean = 0;
  for (const x of v) mean += x;
  mean /= v.length;
  let norm = 0;
  for (let i = 0; i < v.length; i++) {
    v[i] = v[i]! - mean;
    norm += v[i]! * v[i]!;
  }
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < v.length; i++) v[i] = v[i]! / norm;
  return v;
}

async function reduce(img: GreyImage, width: number, height: number): Promise<Float32Array> {
  const buf = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 1 } })
    .resize(width, height, { kernel: "linear", fit: "fill" })
    .toColourspace("b-w") // sharp returns 3 channels for 1-channel raw input otherwise
    .raw()
    .toBuffer();
  return Float32Array.from(buf);
}

/** NCC map of a zero-mean unit-norm n×n template over an image (valid positions only). */
export function nccMap(
  image: Float32Array,
  width: number,
  height: number,
  tpl: Float32Array,
  n: number,
  /** Compute every `stride`-th position in x and y only (the others stay -1). */
  stride = 1,
): { map: Float32Array; width: number; height: number } {
  const mw = width - n + 1;
  const mh = height - n + 1;
  const map = new Float32Array(Math.max(0, mw) * Math.max(0, mh)).fill(-1);
  if (mw <= 0 || mh <= 0) return { map, width: Math.max(0, mw), height: Math.max(0, mh) };
  // Integral images of the image and its square, for each window's mean and variance.
  const iw = width + 1;
  const sum = new Float64Array(iw * (height + 1));
  const sq = new Float64Array(iw * (height + 1));
  for (let y = 0; y < height; y++) {
    let rs = 0;
    let rq = 0;
    for (let x = 0; x < width; x++) {
      const v = image[y * width + x]!;
      rs += v;
      rq += v * v;
      sum[(y + 1) * iw + x + 1] = sum[y * iw + x + 1]! + rs;
      sq[(y + 1) * iw + x + 1] = sq[y * iw + x + 1]! + rq;
    }
  }
  const area = n * n;
  for (let y = 0; y < mh; y += stride) {
    for (let x = 0; x < mw; x += stride) {
      const a = y * iw + x;
      const b = y * iw + x + n;
      const c = (y + n) * iw + x;
      const d = (y + n) * iw + x + n;
      const s = sum[d]! - sum[b]! - sum[c]! + sum[a]!;
      const q = sq[d]! - sq[b]! - sq[c]! + sq[a]!;
      const variance = q - (s * s) / area;
      if (variance <= 1e-6 * area) continue; // flat: no structure to match
      let dot = 0;
      for (let ty = 0; ty < n; ty++) {
        const row = (y + ty) * width + x;
        const trow = ty * n;
        for (let tx = 0; tx < n; tx++) dot += tpl[trow + tx]! * image[row + tx]!;
      }
      // The template is zero-mean, so the image's mean drops out of the numerator.
      map[y * mw + x] = dot / Math.sqrt(variance);
    }
  }
  return { map, width: mw, height: mh };
}

/** |I(y+1, x) - I(y, x)|, the last row repeated: the joint line and the bone ends stand out. */
export function verticalGradient(image: Float32Array, width: number, height: number): Float32Array {
  const g = new Float32Array(width * height);
  for (let y = 0; y < height - 1; y++) {
    for (let x = 0; x < width; x++) {
      g[y * width + x] = Math.abs(image[(y + 1) * width + x]! - image[y * width + x]!);
    }
  }
  if (height > 1) g.copyWithin((height - 1) * width, (height - 2) * width, (height - 1) * width);
  return g;
}

/** |I(y, x+1) - I(y, x)|, the last column repeated: the bone's outline. */
export function horizontalGradient(
  image: Float32Array,
  width: number,
  height: number,
): Float32Array {
  const g = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width - 1; x++)
      g[row + x] = Math.abs(image[row + x + 1]! - image[row + x]!);
    if (width > 1) g[row + width - 1] = g[row + width - 2]!;
  }
  return g;
}

/**
 * The knee score at every position: the mean of three NCCs — intensity with the mean knee, the
 * vertical gradient with the mean knee's (the joint line and bone ends: intensity alone also
 * matches any long bone, a bright column with dark sides), and the horizontal gradient with the
 * mean knee's (the condyles' and plateau's outline, which pins the size).
 */
export function kneeScoreMap(
  image: Float32Array,
  width: number,
  height: number,
  t: KneeTemplate,
  stride = 1,
) {
  const a = nccMap(image, width, height, t.mean, t.size, stride);
  const b = nccMap(verticalGradient(image, width, height), width, height, t.vgrad, t.size, stride);
  const c = nccMap(
    horizontalGradient(image, width, height),
    width,
    height,
    t.hgrad,
    t.size,
    stride,
  );
  for (let i = 0; i < a.map.length; i++) a.map[i] = (a.map[i]! + b.map[i]! + c.map[i]!) / 3;
  return a;
}

function sidesToSearch(img: GreyImage, spacingMm: number | null | undefined): number[] {
  const shorter = Math.min(img.width, img.height);
  let lo: number;
  let hi: number;
  if (spacingMm && spacingMm > 0) {
    lo = 60 / spacingMm;
    hi = 170 / spacingMm;
  } else {
    lo = 0.08 * shorter;
    hi = 0.7 * shorter;
  }
  hi = Math.min(hi, shorter);
  lo = Math.max(lo, COARSE * 2);
  const sides: number[] = [];
  for (let s = lo; s <= hi * 1.0001; s *= SCALE_STEP) sides.push(s);
  return sides;
}

function suppress(candidates: KneeCandidate[], limit: number): KneeCandidate[] {
  const kept: KneeCandidate[] = [];
  for (const c of [...candidates].sort((a, b) => b.score - a.score)) {
    const overlaps = kept.some(
      (k) => Math.hypot(k.cx - c.cx, k.cy - c.cy) < 0.6 * Math.max(k.side, c.side),
    );
    if (!overlaps) kept.push(c);
    if (kept.length >= limit) break;
  }
  return kept;
}

/** Local maxima of a score map (3×3), mapped back to image coordinates. */
function peaks(
  m: { map: Float32Array; width: number; height: number },
  factor: number,
  n: number,
  floor: number,
  stride = 1,
): KneeCandidate[] {
  const out: KneeCandidate[] = [];
  for (let y = 0; y < m.height; y += stride) {
    for (let x = 0; x < m.width; x += stride) {
      const v = m.map[y * m.width + x]!;
      if (v < floor) continue;
      let isMax = true;
      for (let dy = -stride; dy <= stride && isMax; dy += stride) {
        for (let dx = -stride; dx <= stride; dx += stride) {
          const yy = y + dy;
          const xx = x + dx;
          if ((dx || dy) && yy >= 0 && yy < m.height && xx >= 0 && xx < m.width) {
            if (m.map[yy * m.width + xx]! > v) {
              isMax = false;
              break;
            }
          }
        }
      }
      if (isMax) {
        out.push({
          cx: (x + n / 2) / factor,
          cy: (y + n / 2) / factor,
          side: n / factor,
          score: v,
        });
      }
    }
  }
  return out;
}

/** Re-matches a candidate at the template's full size around its position and size. */
async function refine(
  img: GreyImage,
  c: KneeCandidate,
  t: KneeTemplate,
  scales: readonly number[] = [0.82, 0.88, 0.94, 1, 1.06, 1.12, 1.18],
): Promise<KneeCandidate> {
  const n = t.size;
  let best: KneeCandidate = { ...c, score: -1 };
  let bestPatch: Float32Array | undefined;
  // Every other position at each size first; then every position around the best one.
  let bestWindow: { data: Float32Array; w: number; h: number; x: number; y: number } | undefined;
  let bestFrame: { x0: number; y0: number; fx: number; fy: number } | undefined;
  for (const scale of scales) {
    const side = c.side * scale;
    const factor = n / side;
    // Reduce only a window around the candidate: 1.5 sides wide, clipped to the image.
    const half = 0.75 * side;
    const x0 = Math.max(0, Math.floor(c.cx - half));
    const y0 = Math.max(0, Math.floor(c.cy - half));
    const x1 = Math.min(img.width, Math.ceil(c.cx + half));
    const y1 = Math.min(img.height, Math.ceil(c.cy + half));
    const ww = Math.max(n, Math.round((x1 - x0) * factor));
    const wh = Math.max(n, Math.round((y1 - y0) * factor));
    const windowImg = await sharp(img.data, {
      raw: { width: img.width, height: img.height, channels: 1 },
    })
      .extract({ left: x0, top: y0, width: x1 - x0, height: y1 - y0 })
      .resize(ww, wh, { kernel: "linear", fit: "fill" })
      .toColourspace("b-w")
      .raw()
      .toBuffer();
    const windowFloat = Float32Array.from(windowImg);
    const m = kneeScoreMap(windowFloat, ww, wh, t, 2);
    const fx = ww / (x1 - x0);
    const fy = wh / (y1 - y0);
    for (let y = 0; y < m.height; y += 2) {
      for (let x = 0; x < m.width; x += 2) {
        const v = m.map[y * m.width + x]!;
        if (v > best.score) {
          best = { cx: x0 + (x + n / 2) / fx, cy: y0 + (y + n / 2) / fy, side, score: v };
          bestWindow = { data: windowFloat, w: ww, h: wh, x, y };
          bestFrame = { x0, y0, fx, fy };
        }
      }
    }
  }
  if (bestWindow && bestFrame) {
    const { data, w, h } = bestWindow;
    for (let y = Math.max(0, bestWindow.y - 1); y <= Math.min(h - n, bestWindow.y + 1); y++) {
      for (let x = Math.max(0, bestWindow.x - 1); x <= Math.min(w - n, bestWindow.x + 1); x++) {
        const here = patch(data, w, x, y, n);
        const v = kneeScoreMap(here, n, n, t).map[0]!;
        if (v >= best.score) {
          best = {
            cx: bestFrame.x0 + (x + n / 2) / bestFrame.fx,
            cy: bestFrame.y0 + (y + n / 2) / bestFrame.fy,
            side: best.side,
            score: v,
          };
          bestPatch = here;
        }
      }
    }
  }
  // The score: the best of the all-grade and the per-grade templates at the refined square.
  if (bestPatch) {
    for (const g of kneeTemplates()) {
      if (g.size !== n || g.grades.length === 5) continue;
      best.score = Math.max(best.score, kneeScoreMap(bestPatch, n, n, g).map[0]!);
    }
  }
  return best;
}

function patch(image: Float32Array, width: number, x: number, y: number, n: number): Float32Array {
  const out = new Float32Array(n * n);
  for (let r = 0; r < n; r++)
    out.set(image.subarray((y + r) * width + x, (y + r) * width + x + n), r * n);
  return out;
}

/** Finds up to two knee joints. Pure apart from sharp's resampling; no I/O. */
export async function localiseKnees(
  img: GreyImage,
  options: LocaliseOptions = {},
): Promise<LocaliseResult> {
  const minScore = options.minScore ?? DEFAULT_MIN_SCORE;
  const pairMinScore = options.pairMinScore ?? DEFAULT_PAIR_MIN_SCORE;
  const coarse = allGrades(COARSE);
  const fine = allGrades(FINE);
  const candidates: KneeCandidate[] = [];
  for (const side of sidesToSearch(img, options.spacingMm)) {
    const factor = COARSE / side;
    const w = Math.round(img.width * factor);
    const h = Math.round(img.height * factor);
    if (w < COARSE || h < COARSE) continue;
    const reduced = await reduce(img, w, h);
    // Large reductions (small knees in a big image) are searched every other position first;
    // refinement then finds the exact place.
    const stride = w * h > 40_000 ? 2 : 1;
    const m = kneeScoreMap(reduced, w, h, coarse, stride);
    candidates.push(...peaks(m, factor, COARSE, 0.2, stride));
  }
  const top = suppress(candidates, 4);
  const refined = suppress(await Promise.all(top.map((c) => refine(img, c, fine))), 4);

  const best = refined[0] ?? null;
  const knees: KneeCandidate[] = [];
  if (best && best.score >= minScore) {
    knees.push(best);
    const second = refined
      .slice(1)
      .find(
        (c) =>
          c.score >= pairMinScore &&
          c.side / best.side > 0.7 &&
          c.side / best.side < 1.43 &&
          Math.abs(c.cy - best.cy) < 0.5 * best.side &&
          Math.abs(c.cx - best.cx) > 0.8 * best.side,
      );
    if (second) {
      // One patient, one exposure: both knees have the same size. A severe knee (KL 4) matches
      // the templates at a wrong size more easily than a healthy one, so both are re-matched at
      // the better match's size, searching the position only.
      const side = best.side;
      const pair = await Promise.all(
        [best, second].map((k) => refine(img, { ...k, side }, fine, [0.97, 1, 1.03])),
      );
      knees.splice(0, 1, ...pair);
    }
  }
  knees.sort((a, b) => a.cx - b.cx);
  return { knees, best, minScore };
}
