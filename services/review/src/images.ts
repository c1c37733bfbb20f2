/**
 * Pictures for the study page: the radiograph as the worker saw it (@kneegrade/pixels: Modality
 * LUT, VOI, MONOCHROME1), scaled; each knee's crop and its heat map as the Secondary Capture shows
 * them (@kneegrade/dicom-writers). The knee regions and their labels are not drawn into the radiograph:
 * the page draws them over it (study.ts), so the labels follow the radiologist's grades, and the
 * picture depends only on the image and the view asked for (which lets the browser keep it).
 */
import { createHash } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import { IncompleteHeaderError, readRadiographHeader } from "@kneegrade/dicom";
import { heatmapOverlayPng } from "@kneegrade/dicom-writers";
import { readRadiograph } from "@kneegrade/pixels";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import sharp from "sharp";
import { z } from "zod";
import type { ReviewDeps } from "./context.ts";

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

/**
 * The pictures (never the pages): kept by this browser only, and asked for again on every use, so
 * a session that ended gets no picture; an unchanged one is answered 304 without rendering it.
 */
const PRIVATE_REVALIDATE = "private, no-cache";
/** Changes every picture's ETag when the way pictures are drawn changes. */
const PICTURES_VERSION = "2";

/**
 * Marks a picture cacheable under an ETag made from what determines its bytes; true (and a 304
 * sent) when the browser already has it.
 */
function cachedPicture(
  request: FastifyRequest,
  reply: FastifyReply,
  ...parts: (string | Uint8Array)[]
): boolean {
  const hash = createHash("sha256").update(PICTURES_VERSION);
  for (const part of parts) hash.update("\0").update(part);
  const etag = `"${hash.digest("base64url").slice(0, 32)}"`;
  reply.header("cache-control", PRIVATE_REVALIDATE).header("etag", etag);
  const match = request.headers["if-none-match"];
  if (match?.split(",").some((t) => t.trim().replace(/^W\//, "") === etag)) {
    reply.status(304).send();
    return true;
  }
  return false;
}

const InstancePath = z.object({ uid: z.string(), sop: z.string().regex(/^[0-9.]{1,64}\.jpg$/) });
const RadiographQuery = z.object({
  full: z.literal("1").optional(),
  wc: z.coerce.number().finite().optional(),
  ww: z.coerce.number().finite().positive().optional(),
});
const KneePath = z.object({
  id: z.string().uuid(),
  kind: z.enum(["crop.png", "heatmap.png", "region.png"]),
});

export const imageRoutes: FastifyPluginAsync<ReviewDeps> = async (app, { db }) => {
  app.get("/studies/:uid/instances/:sop", async (request, reply) => {
    const parsed = InstancePath.safeParse(request.params);
    if (!parsed.success) return reply.callNotFound();
    const p = parsed.data;
    const instance = await db.instance.findUnique({
      where: { sopInstanceUid: p.sop.slice(0, -4) },
      include: { study: true },
    });
    if (!instance?.spoolPath || instance.study.studyInstanceUid !== p.uid) {
      return reply.callNotFound();
    }
    const view = RadiographQuery.safeParse(request.query);
    const v = view.success ? view.data : {};
    const full = v.full === "1";
    const voi = v.wc !== undefined && v.ww !== undefined ? { center: v.wc, width: v.ww } : null;
    const viewKey = `${full ? "full" : "fit"}:${voi ? `${voi.center}/${voi.width}` : "voi"}`;
    if (cachedPicture(request, reply, instance.sopInstanceUid, instance.digest, viewKey))
      return reply;
    const jpeg = await radiographJpeg(instance.spoolPath, {
      full,
      ...(voi ? { window: voi } : {}),
    });
    return reply.type("image/jpeg").send(jpeg);
  });

  app.get("/knees/:id/:kind", async (request, reply) => {
    const p = KneePath.safeParse(request.params);
    if (!p.success) return reply.callNotFound();
    if (p.data.kind === "region.png") {
      const knee = await db.kneeResult.findUnique({
        where: { id: p.data.id },
        select: { region: true, instance: { select: { spoolPath: true, digest: true } } },
      });
      const region = knee?.region as { x: number; y: number; width: number; height: number };
      if (!region || !knee?.instance.spoolPath) return reply.callNotFound();
      const { spoolPath, digest } = knee.instance;
      if (cachedPicture(request, reply, "region", digest, JSON.stringify(region))) return reply;
      return reply.type("image/png").send(await kneeRegionPng(spoolPath, region));
    }
    const knee = await db.kneeResult.findUnique({
      where: { id: p.data.id },
      select: { cropPng: true, heatmapPng: true },
    });
    if (!knee?.cropPng) return reply.callNotFound();
    if (p.data.kind === "crop.png") {
      if (cachedPicture(request, reply, "crop", knee.cropPng)) return reply;
      return reply.type("image/png").send(Buffer.from(knee.cropPng));
    }
    if (!knee.heatmapPng) return reply.callNotFound();
    if (cachedPicture(request, reply, "heatmap", knee.cropPng, knee.heatmapPng)) return reply;
    return reply.type("image/png").send(await heatmapPng(knee.cropPng, knee.heatmapPng));
  });
};
