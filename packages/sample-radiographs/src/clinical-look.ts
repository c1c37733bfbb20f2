/**
 * What turns a composed radiograph into one as a department exports it: raw detector contrast, the
 * collimator's unexposed border and burned-in side markers.
 */
import { smooth } from "./draw.ts";

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

/** Where a knee is (mm from the image's top-left corner), for its side marker. */
export interface MarkedKnee {
  xMm: number;
  yMm: number;
  sideMm: number;
}

/** 5 × 7 glyphs of the side markers. */
const GLYPHS: Record<"R" | "L", string[]> = {
  R: ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
  L: ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
};

export function applyClinicalLook(
  img: Float32Array,
  width: number,
  height: number,
  spacingMm: number,
  look: ClinicalLook,
  knees: readonly MarkedKnee[],
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
