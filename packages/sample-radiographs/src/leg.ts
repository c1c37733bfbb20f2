/**
 * A leg around a knee crop: soft tissue down the whole image, the femur and tibia continued above
 * and below the crop from its edge rows (as plain fading columns, or as cortical tubes narrowing
 * to the shafts for the clinical look), and the crop itself feathered in.
 */
import { type Canvas, forEachPixelIn, type Square, smooth } from "./draw.ts";

/** Draws the leg of one knee crop (`crop`: 8-bit, `square.side`² pixels) into the canvas. */
export function drawLeg(canvas: Canvas, crop: Uint8Array, square: Square, clinical: boolean): void {
  drawSoftTissue(canvas, square);
  drawBoneBeyondCrop(canvas, crop, square, clinical);
  // Feathered over its left and right edges (above and below, the bone continues from its edge
  // rows without a seam): 3 % of the crop, 10 % with the clinical look's wider tissue contrast.
  setCrop(canvas, crop, square, Math.max(2, Math.round((clinical ? 0.1 : 0.03) * square.side)));
}

/** Soft tissue: a band 1.7 crop sides wide down the whole image, smooth at its edges. */
function drawSoftTissue({ img, width, height }: Canvas, { cx, side }: Square): void {
  const tissueHalf = 0.85 * side;
  for (let x = Math.max(0, cx - tissueHalf - 40); x < Math.min(width, cx + tissueHalf + 40); x++) {
    const edge = smooth((tissueHalf - Math.abs(x - cx)) / (0.15 * side));
    for (let y = 0; y < height; y++) {
      const i = y * width + Math.round(x);
      img[i] = Math.max(img[i]!, 0.04 + 0.2 * edge);
    }
  }
}

/** Bone continued above and below the crop from its edge rows (shafts narrowing as they go). */
function drawBoneBeyondCrop(
  canvas: Canvas,
  crop: Uint8Array,
  { left, top, side }: Square,
  clinical: boolean,
): void {
  const { img, width, height } = canvas;
  const topRow = Float32Array.from({ length: side }, (_, x) => crop[x]! / 255);
  const bottomRow = Float32Array.from(
    { length: side },
    (_, x) => crop[(side - 1) * side + x]! / 255,
  );
  const shafts = clinical
    ? { above: shaftFrom(crop, side, 0), below: shaftFrom(crop, side, side - 1) }
    : null;
  for (let y = 0; y < height; y++) {
    if (y >= top && y < top + side) continue;
    const above = y < top;
    const d = above ? top - y : y - (top + side - 1);
    const row = above ? topRow : bottomRow;
    if (shafts) {
      drawShaftRow(img, width, y, left, d, side, above ? shafts.above : shafts.below, row);
      continue;
    }
    const narrowing = 1 - Math.min(0.35, d / (4 * side));
    const fade = smooth(1 - d / (3 * side));
    for (let x = 0; x < side; x++) {
      const u = (x - side / 2) / narrowing + side / 2;
      const src = row[Math.min(side - 1, Math.max(0, Math.round(u)))]!;
      const gx = left + x;
      if (gx < 0 || gx >= width || y < 0 || y >= height) continue;
      const i = y * width + gx;
      const inside = u >= 0 && u < side ? 1 : 0;
      img[i] = Math.max(img[i]!, (0.2 + (src - 0.2) * fade) * inside + img[i]! * (1 - inside));
    }
  }
}

/** The crop itself, blended into what is beneath over `feather` pixels at its left and right. */
function setCrop(canvas: Canvas, crop: Uint8Array, square: Square, feather: number): void {
  const { img } = canvas;
  const { side } = square;
  forEachPixelIn(canvas, square, (x, y, i) => {
    const edge = Math.min(x, side - 1 - x);
    const w = edge >= feather ? 1 : smooth(edge / feather);
    img[i] = w * (crop[y * side + x]! / 255) + (1 - w) * img[i]!;
  });
}

/** A long bone's shaft as seen from the crop's edge: where the bone is and how bright. */
interface Shaft {
  /** Centre and width of the bone at the crop's edge, crop pixels. */
  centre: number;
  width: number;
  /** Mean bone grey at the edge (0..1), and the tissue's beside it. */
  bone: number;
  tissue: number;
}

function shaftFrom(crop: Uint8Array, side: number, edgeRow: number): Shaft {
  // The edge rows averaged (8 of them), then the bone: the columns well above the darkest.
  const rows = Math.max(1, Math.round(side / 28));
  const profile = new Float32Array(side);
  for (let r = 0; r < rows; r++) {
    const y = edgeRow === 0 ? r : side - 1 - r;
    for (let x = 0; x < side; x++) profile[x]! += crop[y * side + x]! / 255 / rows;
  }
  let lo = 1;
  let hi = 0;
  for (const v of profile) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const threshold = lo + 0.4 * (hi - lo);
  let b0 = side;
  let b1 = -1;
  profile.forEach((v, x) => {
    if (v >= threshold) {
      b0 = Math.min(b0, x);
      b1 = Math.max(b1, x);
    }
  });
  if (b1 < b0) return { centre: side / 2, width: 0.6 * side, bone: 0.6, tissue: lo };
  let bone = 0;
  for (let x = b0; x <= b1; x++) bone += profile[x]!;
  return { centre: (b0 + b1) / 2, width: b1 - b0 + 1, bone: bone / (b1 - b0 + 1), tissue: lo };
}

/**
 * One row of a shaft `d` pixels beyond the crop's edge: a tube of cortical bone (bright at its
 * walls, where the beam crosses the most cortex; darker over the medullary canal) narrowing from
 * the metaphysis at the crop's edge to the diaphysis, blended from the crop's own edge row over the
 * first few millimetres so that there is no seam.
 */
function drawShaftRow(
  img: Float32Array,
  width: number,
  y: number,
  left: number,
  d: number,
  side: number,
  shaft: Shaft,
  edgeRow: Float32Array,
): void {
  // From the metaphysis (at most 0.75 of the crop wide) to a diaphysis a third of the crop wide.
  const start = Math.min(shaft.width, 0.75 * side) / 2;
  const outer = start + (0.17 * side - start) * smooth(d / (0.9 * side));
  const inner = outer * 0.58;
  const ring = (x: number) =>
    2 *
    (Math.sqrt(Math.max(0, outer * outer - x * x)) - Math.sqrt(Math.max(0, inner * inner - x * x)));
  const peak = ring(inner) || 1;
  const blend = smooth(d / (0.25 * side));
  const span = Math.ceil(outer) + 2;
  const from = Math.round(shaft.centre - Math.max(span, shaft.width / 2 + 2));
  const to = Math.round(shaft.centre + Math.max(span, shaft.width / 2 + 2));
  for (let x = from; x <= to; x++) {
    const gx = left + x;
    if (gx < 0 || gx >= width) continue;
    const i = y * width + gx;
    const tube = img[i]! + (shaft.bone * 1.05 - img[i]!) * (ring(x - shaft.centre) / peak);
    const edge = x >= 0 && x < side ? edgeRow[x]! : img[i]!;
    img[i] = Math.max(img[i]!, blend * tube + (1 - blend) * edge);
  }
}
