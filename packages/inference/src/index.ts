export { areaResize } from "./area.ts";
export {
  BatcherClosedError,
  type BatchInfo,
  MicroBatcher,
  type MicroBatcherOptions,
  type Predictor,
} from "./batcher.ts";
export { InferenceError, type InferenceErrorCode } from "./errors.ts";
export {
  ENSEMBLE_RULES,
  type EnsembleRule,
  type LoadModelOptions,
  LocaliserSection,
  type LocaliserSettings,
  loadModel,
  type ManifestMember,
  ManifestSchema,
  type ModelCheck,
  type ModelCheckCode,
  type ModelManifest,
  modelVersion,
} from "./manifest.ts";
export { argmax, poolProbabilities, sharpen, softmax } from "./pooling.ts";
export { Ensemble, type EnsembleOptions } from "./runtime.ts";
// Every type of the ensemble's inputs and outputs.
export type * from "./types.ts";
