/**
 * What the ensemble takes and gives: knee crops in, per-knee predictions (grade, probabilities,
 * members' logits, heat map) and timings out. Shared by the runtime and the modules it composes.
 */

/**
 * One knee crop of exactly the model's input size (its largest member's; a member with a smaller
 * input sees the crop shrunk by a whole factor, see area.ts), row-major grey on the 0–255 scale:
 * 8-bit (Uint8Array), or Float32Array when the crop was resampled in float (as the toolkit's area
 * interpolation does for a model whose input is not 224 px), so nothing is lost to rounding.
 */
export type Crop = Uint8Array | Float32Array;

export interface InputSize {
  height: number;
  width: number;
}

export interface EnsembleMember {
  name: string;
  provider: string;
  inputSize: InputSize & { channels: number };
}

export interface MemberPrediction {
  name: string;
  provider: string;
  /** Raw combiner logits, one per grade. */
  logits: number[];
  /** softmax(logits / temperature): this member's calibrated probabilities. */
  probabilities: number[];
}

export interface Heatmap {
  width: number;
  height: number;
  /** Row-major, width * height values in 0..1 (docs/GRADING.md, "Heat map"). */
  data: Float32Array;
}

export interface KneePrediction {
  /** argmax of `probabilities` (Kellgren–Lawrence 0–4). */
  grade: number;
  /** The manifest's label of `grade`, e.g. "KL2". */
  label: string;
  /** Mean over members of their calibrated probabilities. */
  probabilities: number[];
  members: MemberPrediction[];
  /** Where the tokens voted for `grade`, at the input size. */
  heatmap: Heatmap;
}

export interface MemberTiming {
  name: string;
  provider: string;
  /** Wall time of this member's session run for the batch, in ms. */
  ms: number;
}

export interface PredictTimings {
  /** One entry per session batch (at most maxBatch crops each). */
  batches: { size: number; members: MemberTiming[] }[];
  /** Wall time of the whole call (tensor building, runs, softmax, heat maps), in ms. */
  totalMs: number;
}

/** A member's raw outputs for a batch (row-major float32, as onnxruntime returns them). */
export interface RawMemberOutputs {
  name: string;
  provider: string;
  outputs: Record<string, { dims: number[]; data: Float32Array }>;
}
