export { type CodecOptions, closeCodecs, configureCodecs } from "./codecs.ts";
export { PixelDataError, type PixelDataErrorCode } from "./errors.ts";
export {
  type Radiograph,
  type ReadOptions,
  readRadiograph,
  readRadiographFile,
} from "./radiograph.ts";
export type { Spacing } from "./spacing.ts";
export { describeTransferSyntax, SUPPORTED_TRANSFER_SYNTAXES } from "./syntaxes.ts";
