/** Why a Part 10 file could not be turned into grey pixels. */
export type PixelDataErrorCode =
  | "UNSUPPORTED_TRANSFER_SYNTAX"
  | "UNSUPPORTED_IMAGE"
  | "CORRUPT_PIXEL_DATA"
  | "NO_PIXEL_DATA";

export class PixelDataError extends Error {
  override name = "PixelDataError";
  constructor(
    readonly code: PixelDataErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
