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

export async function radiographJpeg(spoolPath: string, knees: KneeBox[]): Promise<Buffer> {
  const r = await readRadiograph(new Uint8Array(await readFile(spoolPath)));
  const scale = Math.min(1, RADIOGRAPH_WIDTH / r.width);
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
  return sharp(Buffer.from(r.display), { raw: { width: r.width, height: r.height, channels: 1 } })
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
