/**
 * Finds knee joints in a full AP/PA radiograph by normalised cross-correlation (NCC) with a mean
 * knee crop (assets/knee-template.json, built by `python3 -m models.knee_template` from the training
 * crops; a model may bring its own, see `LocaliserSettings` in @kneegrade/inference). The matched
 * square is the crop the model expects: joint centred, femur above, tibia below.
 *
 * Search: the display image is reduced once (the "base": just fine enough for refinement at the
 * smallest size searched), then a small pyramid from it so that a candidate knee square becomes the
 * template's coarse size, for a range of physical sizes (60–170 mm when the pixel spacing is known,
 * otherwise 12–70 % of the shorter image side); the best local maxima over all scales are kept with
 * non-maximum suppression, then refined at the template's full size. At most two knees
 * (bilateral). The correlations run in onnxruntime (ncc.ts), off the event loop.
 *
 * Every knee reported scores at least its threshold after its last refinement: the decision is made
 * on the final scores (`decideKnees`).
 */
import { readFileSync } from "node:fs";
import sharp from "sharp";
import { z } from "zod";
import { type KneeTemplate, kneeScoreMap, OnnxCorrelator, zeroMeanUnitNorm } from "./ncc.ts";
import { resampleLinear } from "./resample.ts";

export { type KneeTemplate, kneeScoreMap, nccMap } from "./ncc.ts";

const TemplateDoc = z.object({
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

/**
 * A template document (the JSON `models.knee_template` writes) as NCC-ready templates. It must
 * hold an all-grade template at the coarse (24 px) and fine (64 px) sizes.
 */
export function parseKneeTemplates(json: unknown, source = "knee template"): KneeTemplate[] {
  const doc = TemplateDoc.parse(json);
  const templates = doc.templates.map((t) => {
    if ([t.mean, t.vgrad, t.hgrad].some((a) => a.length !== t.size ** 2)) {
      throw new Error(`${source}: template ${t.size} has the wrong length`);
    }
    return {
      size: t.size,
      grades: t.grades,
      mean: zeroMeanUnitNorm(Float32Array.from(t.mean)),
      vgrad: zeroMeanUnitNorm(Float32Array.from(t.vgrad)),
      hgrad: zeroMeanUnitNorm(Float32Array.from(t.hgrad)),
    };
  });
  for (const size of [COARSE, FINE]) {
    if (!templates.some((t) => t.size === size && t.grades.length === 5)) {
      throw new Error(`${source}: no all-grade template of size ${size}`);
    }
  }
  return templates;
}

let cached: KneeTemplate[] | undefined;

/**
 * The bundled templates: all grades at 24 px (coarse search) and 64 px (refinement), and each
 * grade alone at 64 px (scoring: a severe knee matches the all-grade mean less well).
 */
export function kneeTemplates(): KneeTemplate[] {
  if (!cached) {
    const path = new URL("../assets/knee-template.json", import.meta.url);
    cached = parseKneeTemplates(JSON.parse(readFileSync(path, "utf8")), path.pathname);
  }
  return cached;
}

function allGrades(templates: KneeTemplate[], size: number): KneeTemplate {
  const t = templates.find((x) => x.size === size && x.grades.length === 5);
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
  /** Templates to match (default: the bundled ones, {@link kneeTemplates}). */
  templates?: KneeTemplate[];
}

export interface LocaliseResult {
  knees: KneeCandidate[];
  /**
   * With one knee found: the best square where its mate would be (at its height, beside it, at its
   * size) whatever its score — a knee with a prosthesis matches the templates poorly, but its
   * metal tells (find.ts). Null when there is no such square, or two knees were found.
   */
  mate: KneeCandidate | null;
  /** The best match in the image whether or not it counts as a knee (for the refusal reason). */
  best: KneeCandidate | null;
  minScore: number;
}

export const DEFAULT_MIN_SCORE = 0.45;
export const DEFAULT_PAIR_MIN_SCORE = 0.42;
const COARSE = 24;
const FINE = 64;
const SCALE_STEP = 1.1;
/**
 * Refinement's sizes around a coarse candidate, 0.82–1.18 in steps of 0.06: the odd ones first,
 * then the two beside the best of those (5 windows instead of all 7).
 */
const REFINE_SCALES = [0.88, 1, 1.12] as const;
const REFINE_STEP = 0.06;
const SMALLEST_REFINE_SCALE = REFINE_SCALES[0] - REFINE_STEP;

const correlator = new OnnxCorrelator();

async function resizeGrey(img: GreyImage, width: number, height: number): Promise<GreyImage> {
  if (img.width === width && img.height === height) return img;
  const buf = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 1 } })
    .resize(width, height, { kernel: "linear", fit: "fill" })
    .toColourspace("b-w") // sharp returns 3 channels for 1-channel raw input otherwise
    .raw()
    .toBuffer();
  return { width, height, data: new Uint8Array(buf.buffer, buf.byteOffset, buf.length) };
}

/** Knee squares searched, mm (pixel spacing known). */
const KNEE_MM = { min: 60, max: 170 } as const;
/**
 * Knee squares searched without a pixel spacing, as shares of the image's shorter side. The
 * smallest: a 60-mm knee on a 500-mm shorter side — no detector is wider (43 × 43 cm is the
 * largest; stitched long-leg images are as narrow), and an export cut from a larger image only
 * makes the knee a larger share of it.
 */
const KNEE_SHARE = { min: 0.12, max: 0.7 } as const;

function sidesToSearch(img: GreyImage, spacingMm: number | null | undefined): number[] {
  const shorter = Math.min(img.width, img.height);
  let lo: number;
  let hi: number;
  if (spacingMm && spacingMm > 0) {
    lo = KNEE_MM.min / spacingMm;
    hi = KNEE_MM.max / spacingMm;
  } else {
    lo = KNEE_SHARE.min * shorter;
    hi = KNEE_SHARE.max * shorter;
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

/**
 * The `limit` best coarse candidates, and for each of the best two the best-scoring candidate
 * where the other knee of a bilateral image would be (at its height, clearly beside it) when none
 * of those is there: on a radiograph of both legs, shafts and condyles of one knee can outrank the
 * other knee at the coarse level, or match it only at another size (a square taking in both
 * condyles and the soft tissue). Such a mate is refined at the lead's size — one patient, one
 * exposure — and must then pass the same thresholds as any knee.
 */
function withMates(ranked: KneeCandidate[], limit: number): KneeCandidate[] {
  const chosen = ranked.slice(0, limit);
  for (const lead of ranked.slice(0, 2)) {
    const inBand = (c: KneeCandidate) => c !== lead && besideAt(lead, c);
    if (chosen.some((c) => inBand(c) && besideAsPair(lead, c))) continue;
    const mate = ranked.find(inBand);
    if (mate) chosen.push({ ...mate, side: lead.side });
  }
  return chosen;
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

/**
 * Re-matches a candidate at the template's full size around its position and size, in the image
 * it is given (the base). Returns the best square and its score: the best of the all-grade and
 * the per-grade templates there.
 */
async function refine(
  img: GreyImage,
  c: KneeCandidate,
  templates: KneeTemplate[],
  scales: readonly number[] = REFINE_SCALES,
  /** Also try the sizes one step beside the best of `scales`. */
  thenNeighbours = true,
): Promise<KneeCandidate> {
  const t = allGrades(templates, FINE);
  const n = t.size;
  let best: KneeCandidate = { ...c, score: -1 };
  let bestPatch: Float32Array | undefined;
  // Every other position at each size first; then every position around the best one.
  let bestWindow: { data: Float32Array; w: number; h: number; x: number; y: number } | undefined;
  let bestFrame: { x0: number; y0: number; fx: number; fy: number } | undefined;
  const scoreWindow = async (scale: number) => {
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
    const data = resampleLinear(img.data, img.width, img.height, ww, wh, {
      x: x0,
      y: y0,
      width: x1 - x0,
      height: y1 - y0,
    });
    const m = await correlator.scoreMap(data, ww, wh, t, 2);
    let peak = -1;
    for (let y = 0; y < m.height; y += 2) {
      for (let x = 0; x < m.width; x += 2) peak = Math.max(peak, m.map[y * m.width + x]!);
    }
    return { scale, peak, side, x0, y0, fx: ww / (x1 - x0), fy: wh / (y1 - y0), ww, wh, data, m };
  };
  const windows = await Promise.all(scales.map(scoreWindow));
  if (thenNeighbours) {
    const top = windows.reduce((a, b) => (b.peak > a.peak ? b : a));
    windows.push(
      ...(await Promise.all([top.scale - REFINE_STEP, top.scale + REFINE_STEP].map(scoreWindow))),
    );
  }
  for (const { side, x0, y0, fx, fy, ww, wh, data, m } of windows) {
    for (let y = 0; y < m.height; y += 2) {
      for (let x = 0; x < m.width; x += 2) {
        const v = m.map[y * m.width + x]!;
        if (v > best.score) {
          best = { cx: x0 + (x + n / 2) / fx, cy: y0 + (y + n / 2) / fy, side, score: v };
          bestWindow = { data, w: ww, h: wh, x, y };
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
    for (const g of templates) {
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

/**
 * Is `c` a plausible second knee beside `first`: same height, clearly beside it, of a size that
 * re-matching at one size can reconcile (one of the two may have matched a square taking in the
 * soft tissue too).
 */
function besideAsPair(first: KneeCandidate, c: KneeCandidate): boolean {
  return c.side / first.side > 0.5 && c.side / first.side < 2 && besideAt(first, c);
}

/** Is `c` where the other knee of `first` would be: at its height, clearly beside it. */
function besideAt(first: KneeCandidate, c: KneeCandidate): boolean {
  return (
    Math.abs(c.cy - first.cy) < 0.5 * first.side && Math.abs(c.cx - first.cx) > 0.8 * first.side
  );
}

/**
 * Which refined candidates are knees. The best one counts from `minScore`; a second one beside it
 * from `pairMinScore`. A pair is then re-matched at one size (`rematch`: one patient, one
 * exposure), and the pair stands only when the re-matched scores still reach the thresholds (the
 * better one `minScore`, the other `pairMinScore`); otherwise the first knee is reported alone, as
 * first refined. Every knee returned therefore scores at least its threshold on its final square.
 */
export async function decideKnees(
  refined: KneeCandidate[],
  thresholds: { minScore: number; pairMinScore: number },
  rematch: (pair: [KneeCandidate, KneeCandidate]) => Promise<[KneeCandidate, KneeCandidate]>,
): Promise<KneeCandidate[]> {
  const best = refined[0];
  if (!best || best.score < thresholds.minScore) return [];
  const second = refined
    .slice(1)
    .find((c) => c.score >= thresholds.pairMinScore && besideAsPair(best, c));
  if (!second) return [best];
  const [a, b] = await rematch([best, second]);
  if (pairPasses([a, b], thresholds)) return [a, b];
  return [best];
}

/** A re-matched pair stands when the better of the two reaches `minScore` and the other `pairMinScore`. */
function pairPasses(
  [a, b]: (KneeCandidate | undefined)[],
  t: { minScore: number; pairMinScore: number },
): boolean {
  const hi = Math.max(a!.score, b!.score);
  const lo = Math.min(a!.score, b!.score);
  return hi >= t.minScore && lo >= t.pairMinScore;
}

/**
 * Finds up to two knees. Pure apart from sharp (the two large reductions: base and pyramid top) and
 * onnxruntime; no I/O. The many small reductions (pyramid levels, refinement windows) are
 * `resampleLinear`'s.
 */
export async function localiseKnees(
  img: GreyImage,
  options: LocaliseOptions = {},
): Promise<LocaliseResult> {
  const minScore = options.minScore ?? DEFAULT_MIN_SCORE;
  const pairMinScore = options.pairMinScore ?? DEFAULT_PAIR_MIN_SCORE;
  const templates = options.templates ?? kneeTemplates();
  const coarse = allGrades(templates, COARSE);
  const sides = sidesToSearch(img, options.spacingMm);
  if (sides.length === 0) return { knees: [], mate: null, best: null, minScore };
  // The base: reduced once, just enough for refinement at the smallest size searched; everything
  // after works on it (far fewer pixels to resample than the full image, every time).
  const baseFactor = Math.min(1, FINE / (SMALLEST_REFINE_SCALE * 0.97 * sides[0]!));
  const base = await resizeGrey(
    img,
    Math.max(1, Math.round(img.width * baseFactor)),
    Math.max(1, Math.round(img.height * baseFactor)),
  );
  const bx = base.width / img.width;
  const by = base.height / img.height;
  // The coarse pyramid's top: the largest coarse reduction, from which the others are made.
  const top = await resizeGrey(
    base,
    Math.max(1, Math.round(img.width * (COARSE / sides[0]!))),
    Math.max(1, Math.round(img.height * (COARSE / sides[0]!))),
  );
  const levels = await Promise.all(
    sides.map(async (side) => {
      const factor = COARSE / side;
      const w = Math.round(img.width * factor);
      const h = Math.round(img.height * factor);
      if (w < COARSE || h < COARSE) return [];
      const reduced = resampleLinear(top.data, top.width, top.height, w, h);
      // Large reductions (small knees in a big image) are searched every other position first;
      // refinement then finds the exact place.
      const stride = w * h > 10_000 ? 2 : 1;
      const m = await correlator.scoreMap(reduced, w, h, coarse, stride);
      return peaks(m, factor, COARSE, 0.2, stride);
    }),
  );
  const toBase = (c: KneeCandidate): KneeCandidate => ({
    ...c,
    cx: c.cx * bx,
    cy: c.cy * by,
    side: c.side * bx,
  });
  const toImage = (c: KneeCandidate): KneeCandidate => ({
    ...c,
    cx: c.cx / bx,
    cy: c.cy / by,
    side: c.side / bx,
  });
  const candidates = withMates(suppress(levels.flat(), 64), 4);
  const refined = suppress(
    await Promise.all(candidates.map((c) => refine(base, toBase(c), templates))),
    4,
  );
  const knees = await decideKnees(refined, { minScore, pairMinScore }, async ([a, b]) => {
    // One patient, one exposure: both knees have the same size. A severe knee (KL 4) matches the
    // templates at a wrong size more easily than a healthy one, and on a radiograph of both legs
    // either may have matched a square that takes in the soft tissue too: both are re-matched at
    // each one's size, searching the position only; the size at which both pass their
    // thresholds is kept (the higher sum of scores when both or neither do).
    const sides = Math.abs(a.side / b.side - 1) > 0.05 ? [a.side, b.side] : [a.side];
    const pairs = await Promise.all(
      sides.map((side) =>
        Promise.all(
          [a, b].map((k) => refine(base, { ...k, side }, templates, [0.97, 1, 1.03], false)),
        ),
      ),
    );
    const passes = (p: (KneeCandidate | undefined)[]) => pairPasses(p, { minScore, pairMinScore });
    const [ra, rb] = pairs.reduce((p, q) =>
      passes(q) !== passes(p)
        ? passes(q)
          ? q
          : p
        : q[0]!.score + q[1]!.score > p[0]!.score + p[1]!.score
          ? q
          : p,
    );
    return [ra!, rb!];
  });
  const found = knees.map(toImage).sort((a, b) => a.cx - b.cx);
  const best = refined[0] ? toImage(refined[0]) : null;
  const lead = knees.length === 1 ? knees[0]! : null;
  const beside = lead && refined.find((c) => c !== refined[0] && besideAsPair(lead, c));
  const mate = beside
    ? toImage(
        await refine(base, { ...beside, side: lead!.side }, templates, [0.97, 1, 1.03], false),
      )
    : null;
  return { knees: found, mate, best, minScore };
}
