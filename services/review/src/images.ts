/**
 * Pictures for the study page: the radiograph as the worker saw it (@kneegrade/pixels: Modality
 * LUT, VOI, MONOCHROME1), scaled; each knee's crop and its heat map as the Secondary Capture shows
 * them (@kneegrade/reports). The knee regions and their labels are not drawn into the radiograph:
 * the page draws them over it (study.ts), so the labels follow the radiologist's grades, and the
 * picture depends only on the image and the view asked for (which lets the browser keep it).
 */
import { open, readFile } from "node:fs/promises";
import { IncompleteHeaderError, readRadiographHeader } from "@kneegrade/dicom";
import { readRadiograph } from "@kneegrade/pixels";
import { heatmapOverlayPng } from "@kneegrade/reports";
import sharp from "sharp";

/** Widest radiograph sent to the browser, pixels. */
export const RADIOGRAPH_WIDTH = 1200;

/** How much of a spooled file is read for its header first (the listener keeps as much). */
const HEADER_PREFIX = 256 * 1024;

/**
 * The original size (Columns × Rows) of a spooled image from its header, for placing the knee
 * regions over the radiograph; null when the file or the attributes are missing.
 */
export async function imageSize(
  spoolPath: string,
): Promise<{ width: number; height: number } | null> {
  try {
    const file = await open(spoolPath, "r");
    let header: ReturnType<typeof readRadiographHeader>;
    try {
      const head = new Uint8Array(HEADER_PREFIX);
      const { bytesRead } = await file.read(head, 0, HEADER_PREFIX, 0);
      try {
        header = readRadiographHeader(head.subarray(0, bytesRead), bytesRead < HEADER_PREFIX);
      } catch (error) {
        if (!(error instanceof IncompleteHeaderError)) throw error;
        header = readRadiographHeader(new Uint8Array(await readFile(spoolPath)), true);
      }
    } finally {
      await file.close();
    }
    return header.columns && header.rows ? { width: header.columns, height: header.rows } : null;
  } catch {
    return null;
  }
}

export interface RadiographView {
  /** The original resolution (for zoom and pan) instead of at most RADIOGRAPH_WIDTH. */
  full?: boolean;
  /** A window on the original modality values (center, width) instead of the image's own VOI. */
  window?: { center: number; width: number };
}

/** Display grey from the modality values through a linear window (MONOCHROME1 inverted). */
function windowed(values: Float32Array, w: { center: number; width: number }, invert: boolean) {
  const out = new Uint8Array(values.length);
  const lo = w.center - w.width / 2;
  const k = 255 / Math.max(w.width, 1e-6);
  for (let i = 0; i < values.length; i++) {
    const g = Math.min(255, Math.max(0, Math.round((values[i]! - lo) * k)));
    out[i] = invert ? 255 - g : g;
  }
  return out;
}

export async function radiographJpeg(
  spoolPath: string,
  view: RadiographView = {},
): Promise<Buffer> {
  const r = await readRadiograph(new Uint8Array(await readFile(spoolPath)));
  const display = view.window
    ? windowed(r.values, view.window, r.photometric === "MONOCHROME1")
    : r.display;
  const scale = view.full ? 1 : Math.min(1, RADIOGRAPH_WIDTH / r.width);
  const width = Math.max(1, Math.round(r.width * scale));
  const height = Math.max(1, Math.round(r.height * scale));
  return sharp(Buffer.from(display), { raw: { width: r.width, height: r.height, channels: 1 } })
    .resize(width, height, { kernel: "lanczos3" })
    .jpeg({ quality: 88 })
    .toBuffer();
}

/** The heat map over the crop (224 px). */
export async function heatmapPng(crop: Uint8Array, heatmap: Uint8Array): Promise<Buffer> {
  return Buffer.from(await heatmapOverlayPng(crop, heatmap, 224));
}

/** Side of an enlarged knee region, pixels. */
export const REGION_SIZE = 512;

/**
 * A knee's region cut from the original pixels (the image's own VOI) at REGION_SIZE: the graded
 * crop is the model's 224-px, contrast-equalised input, this is the radiograph itself.
 */
export async function kneeRegionPng(
  spoolPath: string,
  region: { x: number; y: number; width: number; height: number },
): Promise<Buffer> {
  const r = await readRadiograph(new Uint8Array(await readFile(spoolPath)));
  const left = Math.max(0, Math.min(r.width - 1, Math.round(region.x)));
  const top = Math.max(0, Math.min(r.height - 1, Math.round(region.y)));
  const width = Math.max(1, Math.min(r.width - left, Math.round(region.width)));
  const height = Math.max(1, Math.min(r.height - top, Math.round(region.height)));
  return sharp(Buffer.from(r.display), { raw: { width: r.width, height: r.height, channels: 1 } })
    .extract({ left, top, width, height })
    .resize(REGION_SIZE, REGION_SIZE, { fit: "contain", background: "#000000", kernel: "lanczos3" })
    .png()
    .toBuffer();
}
