/**
 * Knee arthroplasty (a prosthesis at the joint): such a knee gets no Kellgren–Lawrence grade.
 *
 * Metal absorbs far more than bone: in the display image a prosthesis is a large, near-white
 * region with sharp edges, much brighter than the bone around it. Bone can be near-white too
 * (dense condyles, strong contrast enhancement), but it fades into the bone around it; so the test
 * is on the region's size *and* its step above its surroundings:
 *
 * 1. the knee's square resampled to 224 px (display grey, before CLAHE);
 * 2. pixels of at least {@link ARTHROPLASTY.brightGrey} in the square's central part (where the
 *    femoral component, tibial tray and stem are), 4-connected regions of them of at least
 *    {@link ARTHROPLASTY.minRegionFraction} of the square;
 * 3. a region is metal when its mean grey exceeds the median grey of a ring around it (3–5 px
 *    outside) by at least {@link ARTHROPLASTY.minStepGrey}; the knee has metal when such regions
 *    together cover at least {@link ARTHROPLASTY.minAreaFraction} of the square (a prosthesis comes
 *    in pieces: a unicompartmental knee's runner and half tray are small, each on its own);
 * 4. an arthroplasty when that metal lies at the joint: at least
 *    {@link ARTHROPLASTY.minJointFraction} of the square inside the joint band (the crop is centred
 *    on the joint line: rows 30–62 %, reaching up for a patellofemoral shield). Metal elsewhere (screws and plates of a tibial osteotomy or
 *    fracture fixation) leaves the knee gradable; it is reported as a warning.
 *
 * Measured on the 6,604 real knee crops of knee-kl: no arthroplasty found; metal found in four,
 * all fixation hardware in the proximal tibia (see docs/GRADING.md).
 */
import type { GreyImage } from "./localise.ts";

export const ARTHROPLASTY = {
  brightGrey: 235,
  minBrightGrey: 150,
  minThickShare: 0.15,
  minRegionFraction: 0.004,
  minAreaFraction: 0.025,
  minStepGrey: 45,
  minJointFraction: 0.015,
  jointBand: [0.3, 0.62],
} as const;

export interface ArthroplastyFinding {
  /** Metal at the joint: a prosthesis. */
  arthroplasty: boolean;
  /** Metal anywhere in the square's central part (a prosthesis, or fixation hardware). */
  metal: boolean;
  /** The share of the square covered by bright regions that stand out like metal, 0..1. */
  areaFraction: number;
  /** The largest step of any bright region's mean grey over its surroundings' median grey. */
  stepGrey: number;
}

/** Looks for a prosthesis in a knee square (display grey, any size; 224 px is what we pass). */
export function detectArthroplasty(square: GreyImage): ArthroplastyFinding {
  const { width: w, height: h, data } = square;
  const x0 = Math.floor(0.08 * w);
  const x1 = Math.ceil(0.92 * w);
  const y0 = Math.floor(0.12 * h);
  const y1 = Math.ceil(0.92 * h);
  const bright = brightThreshold(data, w, x0, x1, y0, y1);
  const label = new Int32Array(w * h);
  const regions: { id: number; pixels: number[] }[] = [];
  const minPixels = ARTHROPLASTY.minRegionFraction * w * h;
  let next = 1;
  const stack: number[] = [];
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = y * w + x;
      if (label[i] || data[i]! < bright) continue;
      const region: number[] = [];
      label[i] = next;
      stack.push(i);
      while (stack.length > 0) {
        const j = stack.pop()!;
        region.push(j);
        const jx = j % w;
        const jy = (j - jx) / w;
        for (const [nx, ny] of [
          [jx - 1, jy],
          [jx + 1, jy],
          [jx, jy - 1],
          [jx, jy + 1],
        ] as const) {
          if (nx < x0 || nx >= x1 || ny < y0 || ny >= y1) continue;
          const k = ny * w + nx;
          if (label[k] || data[k]! < bright) continue;
          label[k] = next;
          stack.push(k);
        }
      }
      if (region.length >= minPixels) regions.push({ id: next, pixels: region });
      next++;
    }
  }
  // A prosthesis can be several pieces (femoral component, tray; a unicompartmental knee's two
  // small ones): every piece that stands out from its surroundings like metal counts.
  let metalPixels = 0;
  let atJoint = 0;
  let stepGrey = Number.NEGATIVE_INFINITY;
  const [top, bottom] = ARTHROPLASTY.jointBand.map((f) => f * h) as [number, number];
  for (const region of regions) {
    // Metal pieces are thick (a tray is ≥ 4 % of the square high); a bright line one or two
    // pixels wide (a joint space or cortex in an odd exposure) is not one.
    if (thickShare(region.pixels, region.id, label, w) < ARTHROPLASTY.minThickShare) continue;
    const step = stepAbove(region.pixels, region.id, label, data, w, h);
    stepGrey = Math.max(stepGrey, step);
    if (step < ARTHROPLASTY.minStepGrey) continue;
    metalPixels += region.pixels.length;
    for (const i of region.pixels) {
      const y = Math.floor(i / w);
      if (y >= top && y < bottom) atJoint++;
    }
  }
  const areaFraction = metalPixels / (w * h);
  const metal = areaFraction >= ARTHROPLASTY.minAreaFraction;
  return {
    arthroplasty: metal && atJoint / (w * h) >= ARTHROPLASTY.minJointFraction,
    metal,
    areaFraction,
    stepGrey: regions.length ? stepGrey : 0,
  };
}

/** The share of a region's pixels with the region 2 px away on all four sides. */
function thickShare(pixels: readonly number[], id: number, label: Int32Array, w: number): number {
  let core = 0;
  for (const i of pixels) {
    if (
      label[i - 2] === id &&
      label[i + 2] === id &&
      label[i - 2 * w] === id &&
      label[i + 2 * w] === id
    ) {
      core++;
    }
  }
  return core / pixels.length;
}

/**
 * Metal is the brightest thing in the square, but not always white: a photographed film or a dim
 * export leaves it at 200 or below. The threshold follows the square's brightest pixels (its
 * 99.8th percentile, less a margin) up to {@link ARTHROPLASTY.brightGrey}; the step test keeps
 * the densest bone of a knee without metal out.
 */
function brightThreshold(
  data: Uint8Array,
  w: number,
  x0: number,
  x1: number,
  y0: number,
  y1: number,
): number {
  const histogram = new Uint32Array(256);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) histogram[data[y * w + x]!]!++;
  let above = Math.ceil(0.002 * (x1 - x0) * (y1 - y0));
  let top = 255;
  while (top > 0 && above > histogram[top]!) above -= histogram[top--]!;
  return Math.max(ARTHROPLASTY.minBrightGrey, Math.min(ARTHROPLASTY.brightGrey, top - 12));
}

/** A region's mean grey minus the median grey of a ring 3–5 px outside it. */
function stepAbove(
  pixels: readonly number[],
  id: number,
  label: Int32Array,
  data: Uint8Array,
  w: number,
  h: number,
): number {
  let inside = 0;
  for (const i of pixels) inside += data[i]!;
  inside /= pixels.length;
  const ring = new Set<number>();
  for (const i of pixels) {
    const x = i % w;
    const y = (i - x) / w;
    for (const [dx, dy] of [
      [-5, 0],
      [5, 0],
      [0, -5],
      [0, 5],
      [-3, 0],
      [3, 0],
      [0, -3],
      [0, 3],
    ] as const) {
      const nx = x + dx;
      const ny = y + dy;
      if (nx < 0 || nx >= w || ny < 0 || ny >= h) continue;
      const k = ny * w + nx;
      if (label[k] === id) continue;
      // Skip pixels right at the edge (within 1 px of the region): partial-volume blur.
      if (
        label[k - 1] === id ||
        label[k + 1] === id ||
        label[k - w] === id ||
        label[k + w] === id
      ) {
        continue;
      }
      ring.add(k);
    }
  }
  const values = [...ring].map((k) => data[k]!).sort((a, b) => a - b);
  const median = values.length ? values[Math.floor(values.length / 2)]! : inside;
  return inside - median;
}
