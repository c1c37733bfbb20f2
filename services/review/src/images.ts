/**
 * Pictures for the study page: the radiograph as the worker saw it (@kneegrade/pixels: Modality
 * LUT, VOI, MONOCHROME1), scaled, with each graded knee's region and AI grade drawn in; each
 * knee's crop and its heat map as the Secondary Capture shows them (@kneegrade/reports).
 */
import { readFile } from "node:fs/promises";
import { readRadiograph } from "@kneegrade/pixels";
import { heatmapOverlayPng } from "@kneegrade/reports";
import sharp from "sharp";

/** Widest radiograph sent to the browser, pixels. */
export const RADIOGRAPH_WIDTH = 1200;

const SIDE = { RIGHT: "R", LEFT: "L", UNKNOWN: "?" } as const;

export interface KneeBox {
  laterality: keyof typeof SIDE;
  klGrade: number;
  region: { x: number; y: number; width: number; height: number } | null;
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
  knees: KneeBox[],
  view: RadiographView = {},
): Promise<Buffer> {
  const r = await readRadiograph(new Uint8Array(await readFile(spoolPath)));
  const display = view.window
    ? windowed(r.values, view.window, r.photometric === "MONOCHROME1")
    : r.display;
  const scale = view.full ? 1 : Math.min(1, RADIOGRAPH_WIDTH / r.width);
  const width = Math.max(1, Math.round(r.width * scale));
  const height = Math.max(1, Math.round(r.height * scale));
  const stroke = Math.max(2, Math.round(width / 300));
  const font = Math.max(14, Math.round(width / 40));
  const boxes = knees
    .filter((k) => k.region)
    .map((k) => {
      const g = k.region!;
      const [x, y, w, h] = [g.x, g.y, g.width, g.height].map((v) => Math.round(v * scale)) as [
        number,
        number,
        number,
        number,
      ];
      return `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none" stroke="#ffd400" stroke-width="${stroke}"/>
<text x="${x + stroke * 2}" y="${Math.max(font, y - stroke * 2)}" font-family="DejaVu Sans, sans-serif" font-size="${font}" font-weight="bold" fill="#ffd400">${SIDE[k.laterality]} · AI KL${k.klGrade}</text>`;
    });
  const overlay = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${boxes.join("")}</svg>`,
  );
  return sharp(Buffer.from(display), { raw: { width: r.width, height: r.height, channels: 1 } })
    .resize(width, height, { kernel: "lanczos3" })
    .toColourspace("srgb")
    .composite([{ input: overlay, top: 0, left: 0 }])
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
