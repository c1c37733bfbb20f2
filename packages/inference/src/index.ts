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
export type {
  Crop,
  EnsembleMember,
  Heatmap,
  InputSize,
  KneePrediction,
  MemberPrediction,
  MemberTiming,
  PredictTimings,
  RawMemberOutputs,
} from "./types.ts";
