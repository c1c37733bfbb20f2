/**
 * Knee prostheses drawn into composed radiographs, so that the arthroplasty check has positives
 * with a ground truth: crop-relative shapes of each kind, and the grey the metal is drawn at.
 */
import { type Canvas, forEachPixelIn, type Square } from "./draw.ts";

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

/** Metal, before scaling by boneMax: above everything else (clipped to the 12-bit range). */
export const METAL = 2;

/** Draws a prosthesis of `kind` into the knee square at the metal's grey. */
export function drawImplant(canvas: Canvas, square: Square, kind: ImplantKind): void {
  const { side } = square;
  forEachPixelIn(canvas, square, (x, y, i) => {
    if (onProsthesis(x / side, y / side, kind)) canvas.img[i] = METAL;
  });
}
