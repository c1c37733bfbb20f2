/**
 * Full-size knee radiographs composed from real crops of ../shared/data/knee-kl, with the knees at
 * known positions and sizes, written as DX DICOM (radiograph-dicom.ts): what a modality sends, with
 * a ground truth.
 *
 * Each crop (224 px, one knee, femur above, tibia below) is scaled to its physical size and set into
 * a leg: soft tissue around it, the femur and tibia continued above and below it from the crop's
 * edge rows, fading out; plus film noise and a gentle exposure gradient. Stored as 12-bit values.
 */
import { readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import sharp from "sharp";
import { applyClinicalLook, CLINICAL_LOOK, type ClinicalLook } from "./clinical-look.ts";
import { type Canvas, mulberry32 } from "./draw.ts";
import { drawLeg } from "./leg.ts";
import { drawImplant, type ImplantKind } from "./prosthesis.ts";

export interface PlacedKnee {
  /** A 224-px crop (PNG) from knee-kl. */
  png: string;
  /** Centre of the joint in the image, mm from the top-left corner. */
  xMm: number;
  yMm: number;
  /** Side of the square the crop covers, mm. */
  sideMm: number;
  /**
   * Draws a knee prosthesis into this knee at the metal's brightness (the top of the 12-bit range,
   * far above the bone of `boneMax`): `true` or `"total"` a total knee arthroplasty; see
   * {@link ImplantKind} for the others.
   */
  implant?: boolean | ImplantKind;
  /** Rotates the crop by this many degrees (clockwise) before placing it. */
  rotateDeg?: number;
}

export interface ComposedRadiograph {
  width: number;
  height: number;
  spacingMm: number;
  /** 12-bit stored values, row-major (MONOCHROME2 unless asked otherwise). */
  stored: Uint16Array;
  /** Where each knee is, in pixels: centre and side of its crop square. */
  truth: { cx: number; cy: number; side: number; png: string }[];
}

export async function composeRadiograph(opts: {
  widthMm: number;
  heightMm: number;
  spacingMm: number;
  knees: PlacedKnee[];
  seed?: number;
  noise?: number;
  /**
   * The brightest bone, 0..1 of the 12-bit range (default 1: the crops' full range). Below 1 it
   * leaves room above bone for metal, as a real exposure does.
   */
  boneMax?: number;
  /** What a clinical radiograph adds to the knees (see {@link ClinicalLook}); none by default. */
  look?: ClinicalLook;
}): Promise<ComposedRadiograph> {
  const { spacingMm } = opts;
  const width = Math.round(opts.widthMm / spacingMm);
  const height = Math.round(opts.heightMm / spacingMm);
  const rand = mulberry32(opts.seed ?? 1);
  const canvas: Canvas = { img: new Float32Array(width * height).fill(0.04), width, height };
  const truth: ComposedRadiograph["truth"] = [];
  for (const knee of opts.knees) {
    const side = Math.round(knee.sideMm / spacingMm);
    const cx = Math.round(knee.xMm / spacingMm);
    const cy = Math.round(knee.yMm / spacingMm);
    const square = { cx, left: cx - Math.floor(side / 2), top: cy - Math.floor(side / 2), side };
    drawLeg(canvas, await readCrop(knee, side), square, opts.look !== undefined);
    if (knee.implant) drawImplant(canvas, square, knee.implant === true ? "total" : knee.implant);
    truth.push({ cx, cy, side, png: knee.png });
  }
  if (opts.look) applyClinicalLook(canvas.img, width, height, spacingMm, opts.look, opts.knees);
  const stored = toStored(canvas, rand, opts.noise ?? 0.01, opts.boneMax ?? 1);
  return { width, height, spacingMm, stored, truth };
}

/** The knee's crop, rotated if asked, resized to `side`² 8-bit grey. */
async function readCrop(knee: PlacedKnee, side: number): Promise<Uint8Array> {
  let png = sharp(await readFile(knee.png)).greyscale();
  if (knee.rotateDeg) {
    png = sharp(await png.rotate(knee.rotateDeg, { background: "#0a0a0a" }).png().toBuffer());
  }
  return new Uint8Array(
    await png.greyscale().resize(side, side, { kernel: "cubic", fit: "fill" }).raw().toBuffer(),
  );
}

/** 12-bit stored values: film noise and a gentle exposure gradient from top to bottom. */
function toStored(
  { img, width, height }: Canvas,
  rand: () => number,
  noise: number,
  boneMax: number,
): Uint16Array {
  const stored = new Uint16Array(width * height);
  for (let y = 0; y < height; y++) {
    const gradient = 0.95 + 0.1 * (y / height);
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const gauss = (rand() + rand() + rand() - 1.5) * 2 * noise;
      const v = Math.min(1, Math.max(0, img[i]! * boneMax * gradient + gauss));
      stored[i] = Math.round(v * 4095);
    }
  }
  return stored;
}

/**
 * The usual test study: a 360 × 300 mm bilateral image at 0.15 mm, the image's left knee (the
 * patient's right with PatientOrientation L\F) centred at (95, 150) mm, the other at (265, 150) mm,
 * each crop 90 mm wide.
 */
export function composeBilateral(
  pngs: readonly [string, string],
  seed?: number,
  /** Applied to both knees, e.g. `{ rotateDeg: 90 }`. */
  each: Omit<Partial<PlacedKnee>, "png"> = {},
) {
  return composeRadiograph({
    widthMm: 360,
    heightMm: 300,
    spacingMm: 0.15,
    ...(seed === undefined ? {} : { seed }),
    knees: [
      { png: pngs[0], xMm: 95, yMm: 150, sideMm: 90, ...each },
      { png: pngs[1], xMm: 265, yMm: 150, sideMm: 90, ...each },
    ],
  });
}

/**
 * A bilateral standing AP as a department sends it: both legs from mid-femur to mid-tibia
 * (360 × 430 mm at 0.15 mm, the knees at mid-height), raw contrast, the collimator's border and
 * burned-in side markers ({@link CLINICAL_LOOK}). The image's left knee is the patient's right.
 */
export function composeClinicalBilateral(pngs: readonly [string, string], seed?: number) {
  return composeRadiograph({
    widthMm: 360,
    heightMm: 430,
    spacingMm: 0.15,
    ...(seed === undefined ? {} : { seed }),
    look: CLINICAL_LOOK,
    knees: [
      { png: pngs[0], xMm: 95, yMm: 215, sideMm: 90 },
      { png: pngs[1], xMm: 265, yMm: 215, sideMm: 90 },
    ],
  });
}

/** The demo's studies: KL grades of the image's left and right knee, each the 8th val crop of its grade. */
export const DEMO_PAIRS: readonly (readonly [number, number])[] = [
  [1, 3],
  [0, 4],
];

/** The crops of the demo's studies, from a knee-kl `val` folder. */
export function demoCrops(valDir: string): [string, string][] {
  const pick = (g: number) =>
    join(valDir, String(g), readdirSync(join(valDir, String(g))).sort()[7]!);
  return DEMO_PAIRS.map(([a, b]) => [pick(a), pick(b)]);
}
