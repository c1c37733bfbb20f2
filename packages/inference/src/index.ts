export { areaResize } from "./area.ts";
export {
  BatcherClosedError,
  type BatchInfo,
  MicroBatcher,
  type MicroBatcherOptions,
  type Predictor,
} from "./batcher.ts";
export {
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
export {
  argmax,
  type Crop,
  Ensemble,
  type EnsembleMember,
  type EnsembleOptions,
  type Heatmap,
  InferenceError,
  type InferenceErrorCode,
  type InputSize,
  type KneePrediction,
  type MemberPrediction,
  type MemberTiming,
  type PredictTimings,
  type RawMemberOutputs,
  sharpen,
  softmax,
} from "./runtime.ts";
