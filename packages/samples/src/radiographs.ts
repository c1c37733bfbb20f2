/**
 * Full-size knee radiographs composed from real crops of ../shared/data/knee-kl, with the knees at
 * known positions and sizes, written as DX DICOM: what a modality sends, with a ground truth.
 *
 * Each crop (224 px, one knee, femur above, tibia below) is scaled to its physical size and set into
 * a leg: soft tissue around it, the femur and tibia continued above and below it from the crop's
 * edge rows, fading out; plus film noise and a gentle exposure gradient. Stored as 12-bit values.
 */
import { readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { randomUid as newUid } from "@kneegrade/dicom";
import dcmjs from "dcmjs";
import sharp from "sharp";

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

/**
 * The prostheses a knee radiograph shows, as seen on an AP view (crop-relative shapes; the crop is
 * centred on the joint line, femur above):
 * - `total`: femoral component over both condyles (with its intercondylar notch), tibial tray, stem;
 * - `unicompartmental`: one condyle's runner and a half tray with its keel, the other compartment
 *   native;
 * - `patellofemoral`: the trochlear shield over the distal femur, ending just above the joint line;
 * - `revision`: a total knee with long femoral and tibial stems;
 * - `hinged`: femoral and tibial components joined by the central hinge box, with stems.
 */
export type ImplantKind = "total" | "unicompartmental" | "patellofemoral" | "revision" | "hinged";
export const IMPLANT_KINDS: readonly ImplantKind[] = [
  "total",
  "unicompartmental",
  "patellofemoral",
  "revision",
  "hinged",
];

/** Whether crop-relative (u, v) in 0..1 lies on the drawn prosthesis of `kind`. */
export function onProsthesis(u: number, v: number, kind: ImplantKind = "total"): boolean {
  const femoral =
    u >= 0.18 && u <= 0.82 && v >= 0.3 && v <= 0.47 && !(v > 0.41 && Math.abs(u - 0.5) < 0.06);
  const tray = u >= 0.15 && u <= 0.85 && v >= 0.53 && v <= 0.57;
  const stem = Math.abs(u - 0.5) <= 0.05 && v > 0.57 && v <= 0.8;
  switch (kind) {
    case "total":
      return femoral || tray || stem;
    case "unicompartmental": {
      // The runner follows the condyle's curve: thinner towards its front and back ends.
      const runner = u >= 0.2 && u <= 0.44 && v >= 0.37 + 0.25 * (u - 0.32) ** 2 * 4 && v <= 0.47;
      const halfTray = u >= 0.18 && u <= 0.46 && v >= 0.53 && v <= 0.565;
      const keel = u >= 0.3 && u <= 0.34 && v > 0.565 && v <= 0.63;
      return runner || halfTray || keel;
    }
    case "patellofemoral":
      return Math.abs(u - 0.5) <= 0.17 - 0.4 * Math.max(0, 0.3 - v) && v >= 0.2 && v <= 0.44;
    case "revision":
      return femoral || tray || (Math.abs(u - 0.5) <= 0.045 && (v < 0.3 || v > 0.57));
    case "hinged": {
      const box = Math.abs(u - 0.5) <= 0.07 && v >= 0.38 && v <= 0.6;
      return femoral || tray || box || (Math.abs(u - 0.5) <= 0.05 && (v < 0.3 || v > 0.57));
    }
  }
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

/** Metal, before scaling by boneMax: above everything else (clipped to the 12-bit range). */
const METAL = 2;

const smooth = (x: number) => (x <= 0 ? 0 : x >= 1 ? 1 : x * x * (3 - 2 * x));

/**
 * What a clinical radiograph has that a knee crop does not: the detector's raw contrast (the crops
 * are contrast-enhanced; an exported original spends most of its range on soft tissue and the
 * shafts), the collimator's unexposed border (bright), and the lead side markers burned in beside
 * each knee.
 */
export interface ClinicalLook {
  /** Grey range the crops' 0..1 is squeezed into, and the gamma applied first (raw contrast). */
  contrast?: { low: number; high: number; gamma: number };
  /** The exposed field's margin on each side, mm (outside it: the unexposed border). */
  collimationMm?: number;
  /** Burned-in side markers: "R" beside the patient's right knee, "L" beside the left. */
  markers?: boolean;
}

/** The look of the demo's studies and of the tests that check it. */
export const CLINICAL_LOOK: Required<ClinicalLook> = {
  contrast: { low: 0.1, high: 0.72, gamma: 1.25 },
  collimationMm: 12,
  markers: true,
};

/** 5 × 7 glyphs of the side markers. */
const GLYPHS: Record<"R" | "L", string[]> = {
  R: ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
  L: ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
};

function applyClinicalLook(
  img: Float32Array,
  width: number,
  height: number,
  spacingMm: number,
  look: ClinicalLook,
  knees: readonly PlacedKnee[],
): void {
  const { low, high, gamma } = look.contrast ?? CLINICAL_LOOK.contrast;
  for (let i = 0; i < img.length; i++) {
    const v = img[i]!;
    if (v <= 1) img[i] = low + (high - low) * v ** gamma;
  }
  if (look.markers) {
    // AP view, patient facing the tube: the patient's right knee is on the image's left.
    const cell = Math.max(1, Math.round(2.2 / spacingMm));
    const byX = [...knees].sort((a, b) => a.xMm - b.xMm);
    byX.forEach((knee, i) => {
      const letter = byX.length === 1 ? "R" : i === 0 ? "R" : "L";
      const glyph = GLYPHS[letter];
      const x0 = Math.round((knee.xMm + (i === 0 ? -1 : 0.55) * knee.sideMm * 0.9) / spacingMm);
      const y0 = Math.round((knee.yMm - 0.9 * knee.sideMm) / spacingMm);
      for (let gy = 0; gy < 7 * cell; gy++) {
        for (let gx = 0; gx < 5 * cell; gx++) {
          const x = x0 + gx;
          const y = y0 + gy;
          if (x < 0 || x >= width || y < 0 || y >= height) continue;
          if (glyph[Math.floor(gy / cell)]![Math.floor(gx / cell)] === "1") img[y * width + x] = 1;
        }
      }
    });
  }
  const margin = Math.round((look.collimationMm ?? 0) / spacingMm);
  if (margin > 0) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const d = Math.min(x, y, width - 1 - x, height - 1 - y);
        if (d < margin) img[y * width + x] = 0.82 + 0.04 * smooth((margin - d) / margin);
      }
    }
  }
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
  const img = new Float32Array(width * height).fill(0.04);
  const truth: ComposedRadiograph["truth"] = [];
  for (const knee of opts.knees) {
    const side = Math.round(knee.sideMm / spacingMm);
    const cx = Math.round(knee.xMm / spacingMm);
    const cy = Math.round(knee.yMm / spacingMm);
    let png = sharp(await readFile(knee.png)).greyscale();
    if (knee.rotateDeg) {
      png = sharp(await png.rotate(knee.rotateDeg, { background: "#0a0a0a" }).png().toBuffer());
    }
    const crop = new Uint8Array(
      await png.greyscale().resize(side, side, { kernel: "cubic", fit: "fill" }).raw().toBuffer(),
    );
    const left = cx - Math.floor(side / 2);
    const top = cy - Math.floor(side / 2);
    // Soft tissue: a band 1.7 crop sides wide down the whole image, smooth at its edges.
    const tissueHalf = 0.85 * side;
    for (
      let x = Math.max(0, cx - tissueHalf - 40);
      x < Math.min(width, cx + tissueHalf + 40);
      x++
    ) {
      const edge = smooth((tissueHalf - Math.abs(x - cx)) / (0.15 * side));
      for (let y = 0; y < height; y++) {
        const i = y * width + Math.round(x);
        img[i] = Math.max(img[i]!, 0.04 + 0.2 * edge);
      }
    }
    // Bone continued above and below the crop from its edge rows (shafts narrowing as they go).
    const topRow = Float32Array.from({ length: side }, (_, x) => crop[x]! / 255);
    const bottomRow = Float32Array.from(
      { length: side },
      (_, x) => crop[(side - 1) * side + x]! / 255,
    );
    const shafts = opts.look
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
    // The crop itself, feathered into the tissue over its left and right 3 % (above and below, the
    // bone continues from its edge rows without a seam).
    const feather = Math.max(2, Math.round((opts.look ? 0.1 : 0.03) * side));
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const gx = left + x;
        const gy = top + y;
        if (gx < 0 || gx >= width || gy < 0 || gy >= height) continue;
        const edge = Math.min(x, side - 1 - x);
        const w = edge >= feather ? 1 : smooth(edge / feather);
        const i = gy * width + gx;
        img[i] = w * (crop[y * side + x]! / 255) + (1 - w) * img[i]!;
      }
    }
    if (knee.implant) {
      const kind = knee.implant === true ? "total" : knee.implant;
      for (let y = 0; y < side; y++) {
        for (let x = 0; x < side; x++) {
          const gx = left + x;
          const gy = top + y;
          if (gx < 0 || gx >= width || gy < 0 || gy >= height) continue;
          if (onProsthesis(x / side, y / side, kind)) img[gy * width + gx] = METAL;
        }
      }
    }
    truth.push({ cx, cy, side, png: knee.png });
  }
  if (opts.look) applyClinicalLook(img, width, height, spacingMm, opts.look, opts.knees);
  const noise = opts.noise ?? 0.01;
  const boneMax = opts.boneMax ?? 1;
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
  return { width, height, spacingMm, stored, truth };
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

export interface RadiographDicomOptions {
  studyInstanceUid?: string;
  /** Default SYNTH0001; studies shown side by side (the demo's) each need their own. */
  accessionNumber?: string;
  seriesInstanceUid?: string;
  sopInstanceUid?: string;
  photometric?: "MONOCHROME1" | "MONOCHROME2";
  /** Which attribute carries the spacing (DX writes ImagerPixelSpacing; CR often PixelSpacing). */
  spacingAttribute?: "PixelSpacing" | "ImagerPixelSpacing" | "none";
  patientOrientation?: [string, string] | null;
  imageLaterality?: "R" | "L" | "B" | "U" | null;
  viewPosition?: string;
  bodyPart?: string;
  /** Study and Series Description (default: a bilateral knee study). */
  studyDescription?: string;
  seriesDescription?: string;
}

/** Writes a composed radiograph as a DX (for presentation) Part 10 file, Explicit VR Little Endian. */
export function radiographDicom(r: ComposedRadiograph, o: RadiographDicomOptions = {}): Uint8Array {
  const { DicomDict, DicomMetaDictionary } = dcmjs.data;
  const photometric = o.photometric ?? "MONOCHROME2";
  const pixels =
    photometric === "MONOCHROME1" ? r.stored.map((v) => 4095 - v) : Uint16Array.from(r.stored);
  const sopClassUid = "1.2.840.10008.5.1.4.1.1.1.1"; // Digital X-Ray Image Storage - For Presentation
  const sopInstanceUid = o.sopInstanceUid ?? newUid();
  const spacing = [r.spacingMm, r.spacingMm];
  const spacingAttribute = o.spacingAttribute ?? "ImagerPixelSpacing";
  const dataset: Record<string, unknown> = {
    SpecificCharacterSet: "ISO_IR 100",
    ImageType: ["ORIGINAL", "PRIMARY"],
    SOPClassUID: sopClassUid,
    SOPInstanceUID: sopInstanceUid,
    StudyDate: "20261127",
    ContentDate: "20261127",
    StudyTime: "101500",
    ContentTime: "101500",
    AccessionNumber: o.accessionNumber ?? "SYNTH0001",
    Modality: "DX",
    PresentationIntentType: "FOR PRESENTATION",
    Manufacturer: "kneegrade test composer",
    ReferringPhysicianName: "",
    StudyDescription: o.studyDescription ?? "XR KNEE BILATERAL (synthetic test image)",
    SeriesDescription: o.seriesDescription ?? "Knees AP",
    PatientName: "Synthetic^Knee",
    PatientID: "SYNTH-KNEE",
    PatientBirthDate: "",
    PatientSex: "O",
    BodyPartExamined: o.bodyPart ?? "KNEE",
    ViewPosition: o.viewPosition ?? "AP",
    StudyInstanceUID: o.studyInstanceUid ?? newUid(),
    SeriesInstanceUID: o.seriesInstanceUid ?? newUid(),
    StudyID: "1",
    SeriesNumber: "1",
    InstanceNumber: "1",
    SamplesPerPixel: 1,
    PhotometricInterpretation: photometric,
    Rows: r.height,
    Columns: r.width,
    BitsAllocated: 16,
    BitsStored: 12,
    HighBit: 11,
    PixelRepresentation: 0,
    WindowCenter: "2048",
    WindowWidth: "4096",
    RescaleIntercept: "0",
    RescaleSlope: "1",
    RescaleType: "US",
    LossyImageCompression: "00",
    BurnedInAnnotation: "NO",
    PixelIntensityRelationship: "LOG",
    PixelIntensityRelationshipSign: photometric === "MONOCHROME1" ? -1 : 1,
    DetectorType: "SCINTILLATOR",
    PixelData: [pixels.buffer],
    _vrMap: { PixelData: "OW" },
  };
  if (spacingAttribute !== "none") dataset[spacingAttribute] = spacing;
  if (o.patientOrientation !== null)
    dataset.PatientOrientation = o.patientOrientation ?? ["L", "F"];
  if (o.imageLaterality !== null) dataset.ImageLaterality = o.imageLaterality ?? "B";
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: sopClassUid,
    MediaStorageSOPInstanceUID: sopInstanceUid,
    TransferSyntaxUID: "1.2.840.10008.1.2.1",
    ImplementationClassUID: "2.25.300419254128446211542468591235212390941",
    ImplementationVersionName: "KNEEGRADE_TEST",
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(dataset);
  return new Uint8Array(dict.write());
}

/**
 * A foot, dorsoplantar, as 8-bit display grey (1,600 × 2,000 px, ≈ 0.15 mm): soft tissue, a tarsal
 * block and five metatarsals with their phalanges fanning out — bone on the scale of a knee's,
 * but no knee joint. A negative for the localiser (feet and ankles were graded as knees).
 */
export function drawFoot(seed = 1): { width: number; height: number; data: Uint8Array } {
  const w = 1600;
  const h = 2000;
  const img = new Float32Array(w * h).fill(0.04);
  const rand = mulberry32(seed);
  /** A bone (or soft tissue): a capsule of radius r from (x0, y0) to (x1, y1), cortex brighter. */
  const capsule = (x0: number, y0: number, x1: number, y1: number, r: number, v: number) => {
    const dx = x1 - x0;
    const dy = y1 - y0;
    const len2 = dx * dx + dy * dy || 1;
    for (
      let y = Math.max(0, Math.floor(Math.min(y0, y1) - r));
      y <= Math.min(h - 1, Math.max(y0, y1) + r);
      y++
    ) {
      for (
        let x = Math.max(0, Math.floor(Math.min(x0, x1) - r));
        x <= Math.min(w - 1, Math.max(x0, x1) + r);
        x++
      ) {
        const t = Math.max(0, Math.min(1, ((x - x0) * dx + (y - y0) * dy) / len2));
        const d = Math.hypot(x - (x0 + t * dx), y - (y0 + t * dy));
        if (d < r) img[y * w + x] = Math.max(img[y * w + x]!, v * (d > 0.75 * r ? 1 : 0.8));
      }
    }
  };
  capsule(800, 1850, 800, 500, 420, 0.22);
  capsule(800, 1750, 800, 1250, 230, 0.6);
  for (let k = 0; k < 5; k++) {
    const base = 560 + k * 120;
    const head = 480 + k * 160;
    const bend = (k - 2) * 10;
    capsule(base, 1250, head, 700, 38, 0.7);
    capsule(head, 690, head + bend, 520, 30, 0.65);
    capsule(head + bend, 510, head + 1.4 * bend, 420, 26, 0.6);
  }
  const data = new Uint8Array(w * h);
  for (let i = 0; i < data.length; i++) {
    data[i] = Math.max(0, Math.min(255, Math.round((img[i]! + (rand() - 0.5) * 0.04) * 255)));
  }
  return { width: w, height: h, data };
}
