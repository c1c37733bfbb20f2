/**
 * Cuts the model's input from a localised knee: the matched square (padded with black where it
 * leaves the image), resampled to the training crops' 224 px, contrast-enhanced with CLAHE like
 * the training crops, then resampled to the model's input size when that differs.
 *
 * CLAHE: the training crops (Chen 2018) were released CLAHE-enhanced with unpublished parameters.
 * We use a 4×4 tile grid (56-px tiles at 224 px) with a slope limit of 2: mild enough that an
 * already enhanced crop changes by ≈ 2.6 grey levels on average, so it is not enhanced twice.
 */
import { areaResize } from "@kneegrade/inference";
import sharp from "sharp";
import type { GreyImage, KneeCandidate } from "./localise.ts";

export const TRAINING_CROP_SIZE = 224;
export const CLAHE = { width: 56, height: 56, maxSlope: 2 } as const;

/** A square image size. */
export const squareOf = (side: number) => ({ height: side, width: side });
const raw = (width: number, height: number) => ({ raw: { width, height, channels: 1 as const } });

/** The knee's square, `side` pixels, black outside the image. */
export function squareAround(img: GreyImage, knee: KneeCandidate): GreyImage {
  const side = Math.max(1, Math.round(knee.side));
  const left = Math.round(knee.cx - side / 2);
  const top = Math.round(knee.cy - side / 2);
  const out = new Uint8Array(side * side);
  for (let y = 0; y < side; y++) {
    const sy = top + y;
    if (sy < 0 || sy >= img.height) continue;
    const x0 = Math.max(0, -left);
    const x1 = Math.min(side, img.width - left);
    if (x1 <= x0) continue;
    out.set(
      img.data.subarray(sy * img.width + left + x0, sy * img.width + left + x1),
      y * side + x0,
    );
  }
  return { width: side, height: side, data: out };
}

async function resize(img: GreyImage, size: number): Promise<Uint8Array> {
  if (img.width === size && img.height === size) return img.data;
  const buf = await sharp(img.data, raw(img.width, img.height))
    .resize(size, size, { kernel: "lanczos3", fit: "fill" })
    .toColourspace("b-w")
    .raw()
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

export async function clahe(img: GreyImage): Promise<Uint8Array> {
  const buf = await sharp(img.data, raw(img.width, img.height))
    .clahe(CLAHE)
    .toColourspace("b-w")
    .raw()
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

export interface KneeCrop {
  /** 224 px, CLAHE-enhanced: what a reviewer is shown, and the training crops' format. */
  crop224: Uint8Array;
  /** 224 px before CLAHE: the display grey as it was (what the arthroplasty check looks at). */
  plain224?: Uint8Array;
  /** The model's input (inputSize², row-major): grey 0–255, area-resampled from crop224. */
  input: Float32Array;
}

/** The model's input for one knee of a full radiograph. */
export async function cutKnee(
  img: GreyImage,
  knee: KneeCandidate,
  inputSize: number,
): Promise<KneeCrop> {
  const square = squareAround(img, knee);
  const at224 = await resize(square, TRAINING_CROP_SIZE);
  const crop224 = await clahe({
    width: TRAINING_CROP_SIZE,
    height: TRAINING_CROP_SIZE,
    data: at224,
  });
  return {
    crop224,
    plain224: at224,
    input: areaResize(crop224, squareOf(TRAINING_CROP_SIZE), squareOf(inputSize)),
  };
}

/**
 * The model's input for an image that already is a knee crop (a PNG/JPEG from a training-style
 * data set, graded by `kneegrade grade` / `evaluate`): grey, brought to 224 px if it is not,
 * no further enhancement — the same path as the toolkit's `models.evaluate`.
 */
export async function cropFromImageFile(bytes: Uint8Array, inputSize: number): Promise<KneeCrop> {
  const { data, info } = await sharp(bytes)
    .greyscale()
    .toColourspace("b-w")
    .raw()
    .toBuffer({ resolveWithObject: true });
  const grey: GreyImage = { width: info.width, height: info.height, data: new Uint8Array(data) };
  const crop224 = await resize(grey, TRAINING_CROP_SIZE);
  return { crop224, input: areaResize(crop224, squareOf(TRAINING_CROP_SIZE), squareOf(inputSize)) };
}
