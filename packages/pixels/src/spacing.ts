/**
 * Pixel spacing of a projection radiograph (PS3.3 C.8.11.1.1.1 and 10.7.1.3): Pixel Spacing
 * (0028,0030) is calibrated at the patient and wins when present; otherwise Imager Pixel Spacing
 * (0018,1164) is at the detector and is divided by Estimated Radiographic Magnification Factor
 * (0018,1114) when that is present. Both are "row spacing\column spacing" in mm.
 */
import type dicomParser from "dicom-parser";

export interface Spacing {
  /** mm between the centres of adjacent rows. */
  rowMm: number;
  /** mm between the centres of adjacent columns. */
  colMm: number;
  source:
    | "PixelSpacing"
    | "ImagerPixelSpacing"
    | "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor";
}

const positive = (v: number | undefined): v is number =>
  v !== undefined && Number.isFinite(v) && v > 0;

/** Both values of a "row\column" pair, or undefined when absent or not two positive numbers. */
function pair(ds: dicomParser.DataSet, tag: string): [number, number] | undefined {
  const text = ds.string(tag);
  if (!text) return undefined;
  const parts = text.split("\\").map((s) => Number(s.trim()));
  const [row, col] = parts;
  return parts.length === 2 && positive(row) && positive(col) ? [row, col] : undefined;
}

export function readSpacing(ds: dicomParser.DataSet): Spacing | null {
  const calibrated = pair(ds, "x00280030");
  if (calibrated) return { rowMm: calibrated[0], colMm: calibrated[1], source: "PixelSpacing" };
  const imager = pair(ds, "x00181164");
  if (!imager) return null;
  const text = ds.string("x00181114");
  const magnification = text === undefined ? undefined : Number(text);
  if (positive(magnification)) {
    return {
      rowMm: imager[0] / magnification,
      colMm: imager[1] / magnification,
      source: "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor",
    };
  }
  return { rowMm: imager[0], colMm: imager[1], source: "ImagerPixelSpacing" };
}
