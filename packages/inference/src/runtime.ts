/**
 * The PIM ensemble in onnxruntime-node: one InferenceSession per member on the first execution
 * provider that works for it, batched prediction of preprocessed 8-bit grey knee crops, calibrated
 * ensemble probabilities and a class heat map per knee.
 */
import { performance } from "node:perf_hooks";
import { createLogger, type Logger } from "@kneegrade/log";
import * as ort from "onnxruntime-node";
import { areaResize } from "./area.ts";
import {
  cropSize,
  type EnsembleRule,
  type LocaliserSettings,
  type ManifestMember,
  type ModelManifest,
  readModel,
} from "./manifest.ts";

export type InferenceErrorCode =
  | "MODEL_MISSING"
  | "MODEL_INVALID"
  | "MODEL_NOT_FOR_PATIENTS"
  | "NO_PROVIDER"
  | "BAD_INPUT"
  | "CLOSED";

export class InferenceError extends Error {
  constructor(
    readonly code: InferenceErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "InferenceError";
  }
}

export interface EnsembleOptions {
  modelDir: string;
  /**
   * Execution providers in order of preference, e.g. ["webgpu", "cuda", "cpu"]. Each member gets
   * the first one whose session can be created (each is tried alone). Default ["cpu"].
   */
  providers?: string[];
  /** Threads inside one operator (onnxruntime's intraOpNumThreads); default: onnxruntime's. */
  intraOpThreads?: number;
  /** Threads across independent operators (interOpNumThreads); default: onnxruntime's. */
  interOpThreads?: number;
  /** Most crops per session run; larger predict calls are split. Default 8. */
  maxBatch?: number;
  /** Accept a status "smoke" model (tests, benchmarks). Never in production. */
  allowTestModel?: boolean;
  logger?: Logger;
}

/**
 * One knee crop of exactly the model's input size (its largest member's; a member with a smaller
 * input sees the crop shrunk by a whole factor, see {@link areaResize}), row-major grey on the
 * 0–255 scale: 8-bit
 * (Uint8Array), or Float32Array when the crop was resampled in float (as the toolkit's area
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

interface Loaded {
  spec: ManifestMember;
  session: ort.InferenceSession;
  provider: string;
  tokenOutputs: string[];
}

const DEFAULT_MAX_BATCH = 8;

export class Ensemble {
  readonly version: string;
  readonly manifest: ModelManifest;
  /** The knee localiser's thresholds and template for this model (manifest `localiser`). */
  readonly localiser: LocaliserSettings;
  readonly inputSize: InputSize;
  readonly maxBatch: number;
  readonly members: readonly EnsembleMember[];
  private readonly loaded: Loaded[];
  private readonly labels: string[];
  private readonly inflight = new Set<Promise<unknown>>();
  private closed = false;

  private constructor(
    manifest: ModelManifest,
    version: string,
    loaded: Loaded[],
    maxBatch: number,
    localiser: LocaliserSettings,
  ) {
    this.localiser = localiser;
    this.manifest = manifest;
    this.version = version;
    this.loaded = loaded;
    this.maxBatch = maxBatch;
    this.labels = manifest.labels;
    this.inputSize = cropSize(manifest.members);
    this.members = loaded.map((m) => ({
      name: m.spec.name,
      provider: m.provider,
      inputSize: {
        height: m.spec.input.height,
        width: m.spec.input.width,
        channels: m.spec.input.channels,
      },
    }));
  }

  /**
   * Checks the model (as `loadModel`, including every member's sha256), then creates one session
   * per member from the verified bytes. Throws an {@link InferenceError} when the model is not
   * usable or no provider in the list can run a member.
   */
  static async open(options: EnsembleOptions): Promise<Ensemble> {
    const providers = options.providers ?? ["cpu"];
    if (providers.length === 0) throw new TypeError("providers: give at least one, e.g. ['cpu']");
    const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) {
      throw new TypeError(`maxBatch must be a positive integer, got ${maxBatch}`);
    }
    for (const key of ["intraOpThreads", "interOpThreads"] as const) {
      const n = options[key];
      if (n !== undefined && (!Number.isInteger(n) || n < 1)) {
        throw new TypeError(`${key} must be a positive integer, got ${n}`);
      }
    }
    const log = options.logger ?? createLogger("inference");
    const model = await readModel(options.modelDir, {
      allowTestModel: options.allowTestModel ?? false,
    });
    if (!model.ok) throw new InferenceError(model.code, model.reason);

    const loaded: Loaded[] = [];
    try {
      for (const spec of model.manifest.members) {
        const bytes = model.files.get(spec.name)!;
        const { session, provider } = await createSession(spec, bytes, providers, options, log);
        loaded.push({ spec, session, provider, tokenOutputs: tokenOutputs(spec) });
        checkSessionNames(spec, session);
      }
    } catch (error) {
      await Promise.allSettled(loaded.map((m) => m.session.release()));
      throw error;
    }
    const ensemble = new Ensemble(model.manifest, model.version, loaded, maxBatch, model.localiser);
    log.info(
      {
        event: "inference.model-opened",
        modelVersion: model.version,
        modelStatus: model.manifest.status,
        members: ensemble.members.map((m) => ({ name: m.name, provider: m.provider })),
        inputSize: ensemble.inputSize,
        maxBatch,
      },
      "model opened",
    );
    return ensemble;
  }

  /**
   * Throws an {@link InferenceError} (code BAD_INPUT) unless `crops` is an array of 8-bit grey
   * images of exactly `inputSize` (row-major, height * width values each; see {@link Crop}).
   */
  validate(crops: readonly Crop[]): void {
    if (!Array.isArray(crops)) {
      throw new InferenceError("BAD_INPUT", "crops must be an array of Uint8Array images");
    }
    const { height, width } = this.inputSize;
    crops.forEach((crop, i) => {
      if (!(crop instanceof Uint8Array) && !(crop instanceof Float32Array)) {
        throw new InferenceError(
          "BAD_INPUT",
          `crop ${i}: expected a Uint8Array (8-bit grey) or a Float32Array (grey 0-255)`,
        );
      }
      if (crop.length !== height * width) {
        throw new InferenceError(
          "BAD_INPUT",
          `crop ${i}: expected ${height * width} bytes (${width}x${height} 8-bit grey, ` +
            `row-major), got ${crop.length}`,
        );
      }
    });
  }

  /** Grades every crop; see {@link predictTimed}. */
  async predict(crops: readonly Crop[]): Promise<KneePrediction[]> {
    return (await this.predictTimed(crops)).predictions;
  }

  /**
   * Grades every crop (8-bit grey, exactly `inputSize`, already cropped and CLAHE-enhanced),
   * in session batches of at most `maxBatch`, and says how long each member's runs took.
   */
  async predictTimed(
    crops: readonly Crop[],
  ): Promise<{ predictions: KneePrediction[]; timings: PredictTimings }> {
    this.validate(crops);
    return this.track(async () => {
      const start = performance.now();
      const predictions: KneePrediction[] = [];
      const batches: PredictTimings["batches"] = [];
      for (let at = 0; at < crops.length; at += this.maxBatch) {
        const batch = crops.slice(at, at + this.maxBatch);
        const { raw, timings } = await this.runBatch(batch);
        batches.push({ size: batch.length, members: timings });
        for (let i = 0; i < batch.length; i++) predictions.push(this.summarise(raw, i));
      }
      return { predictions, timings: { batches, totalMs: performance.now() - start } };
    });
  }

  /** Every member's raw outputs for `crops` in one run each (parity checks, debugging). */
  async runRaw(crops: readonly Crop[]): Promise<RawMemberOutputs[]> {
    this.validate(crops);
    return this.track(async () => (await this.runBatch(crops)).raw);
  }

  /** Waits for running predictions, then releases the sessions. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inflight]);
    await Promise.allSettled(this.loaded.map((m) => m.session.release()));
  }

  private async track<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) throw new InferenceError("CLOSED", "the ensemble is closed");
    const promise = work();
    this.inflight.add(promise);
    try {
      return await promise;
    } finally {
      this.inflight.delete(promise);
    }
  }

  private async runBatch(
    crops: readonly Crop[],
  ): Promise<{ raw: RawMemberOutputs[]; timings: MemberTiming[] }> {
    const raw: RawMemberOutputs[] = [];
    const timings: MemberTiming[] = [];
    if (crops.length === 0) return { raw, timings };
    const tensors = new Map<string, ort.Tensor>();
    for (const m of this.loaded) {
      const { name, channels, height, width, intensity } = m.spec.input;
      // A member with a smaller input sees the crop shrunk by a whole factor (manifest check).
      const factor = this.inputSize.height / height;
      const key = `${channels}/${intensity.scale}/${intensity.offset}/${factor}`;
      let tensor = tensors.get(key);
      if (!tensor) {
        const seen =
          factor === 1 ? crops : crops.map((c) => areaResize(c, this.inputSize, { height, width }));
        const data = toFloatNchw(seen, channels, height * width, intensity.scale, intensity.offset);
        tensor = new ort.Tensor("float32", data, [crops.length, channels, height, width]);
        tensors.set(key, tensor);
      }
      const fetches = ["logits", ...m.tokenOutputs];
      const start = performance.now();
      const result = await m.session.run({ [name]: tensor }, fetches);
      timings.push({ name: m.spec.name, provider: m.provider, ms: performance.now() - start });
      const outputs: RawMemberOutputs["outputs"] = {};
      for (const out of fetches) {
        const t = result[out];
        if (!t || !(t.data instanceof Float32Array)) {
          throw new Error(`member ${m.spec.name}: output ${out} is missing or not float32`);
        }
        outputs[out] = { dims: [...t.dims], data: t.data };
      }
      const logits = outputs.logits!;
      if (logits.dims.length !== 2 || logits.dims[0] !== crops.length) {
        throw new Error(`member ${m.spec.name}: logits have shape [${logits.dims}]`);
      }
      if (logits.dims[1] !== this.labels.length) {
        throw new Error(
          `member ${m.spec.name}: ${logits.dims[1]} logits per knee, the manifest has ` +
            `${this.labels.length} labels`,
        );
      }
      for (const out of m.tokenOutputs) {
        const dims = outputs[out]!.dims;
        if (dims.length !== 4 || dims[0] !== crops.length || dims[1] !== this.labels.length) {
          throw new Error(`member ${m.spec.name}: ${out} has shape [${dims}]`);
        }
      }
      raw.push({ name: m.spec.name, provider: m.provider, outputs });
    }
    return { raw, timings };
  }

  private summarise(raw: RawMemberOutputs[], i: number): KneePrediction {
    const k = this.labels.length;
    const members: MemberPrediction[] = raw.map((r, m) => {
      const logits = Array.from(r.outputs.logits!.data.subarray(i * k, (i + 1) * k));
      const probabilities = softmax(logits, this.loaded[m]!.spec.temperature);
      return { name: r.name, provider: r.provider, logits, probabilities };
    });
    const pooled = poolProbabilities(
      members.map((m) => m.probabilities),
      this.manifest.ensemble.rule,
    );
    const probabilities = sharpen(pooled, this.manifest.ensemble.temperature ?? 1);
    const grade = argmax(probabilities);
    return {
      grade,
      label: this.labels[grade]!,
      probabilities,
      members,
      heatmap: this.heatmap(raw, i, grade),
    };
  }

  /**
   * The heat map of crop `i` for class `grade`: each token's probability of the grade (softmax of
   * its class logits over the classes, as the selector ranks tokens), bilinearly upsampled to the
   * input size (half-pixel centres, edges clamped: PyTorch's `interpolate(..., align_corners=False)`),
   * averaged over levels and members, then scaled to 0..1 for this crop between its 2nd and 98th
   * percentiles (clipped; all zeros when the map is flat).
   *
   * The raw grade channel is not used: the suppression loss drives every class logit of an
   * unselected token down together, so a token's raw logits mostly say how strongly it was
   * suppressed, not which grade it votes for; on the test model that map was as hot at the crop's
   * edges as over the joint, and a few strongly suppressed tokens set its minimum, so min–max
   * scaling left most of the crop hot.
   */
  private heatmap(raw: RawMemberOutputs[], i: number, grade: number): Heatmap {
    const { height, width } = this.inputSize;
    // Upsampling is linear: sum the maps of equal grid size first, then upsample each sum once.
    const grids = new Map<string, { h: number; w: number; sum: Float32Array }>();
    let maps = 0;
    for (const [m, r] of raw.entries()) {
      for (const out of this.loaded[m]!.tokenOutputs) {
        const { dims, data } = r.outputs[out]!;
        const [, k, h, w] = dims as [number, number, number, number];
        const key = `${h}x${w}`;
        let grid = grids.get(key);
        if (!grid) {
          grid = { h, w, sum: new Float32Array(h * w) };
          grids.set(key, grid);
        }
        addClassProbability(data, i * k * h * w, k, h * w, grade, grid.sum);
        maps++;
      }
    }
    const acc = new Float32Array(height * width);
    for (const { h, w, sum } of grids.values()) upsampleAdd(sum, 0, h, w, acc, height, width);
    for (let p = 0; p < acc.length; p++) acc[p] = acc[p]! / maps;
    return { width, height, data: robustUnit(acc, HEAT_LOW_PERCENTILE, HEAT_HIGH_PERCENTILE) };
  }
}

/** Percentiles of a crop's heat that become 0 and 1 (values beyond them are clipped). */
export const HEAT_LOW_PERCENTILE = 2;
export const HEAT_HIGH_PERCENTILE = 98;

/**
 * Adds, per token, softmax over the `k` class maps of `data[at..]` (each `n` tokens, class-major)
 * at class `grade` to `sum`.
 */
export function addClassProbability(
  data: Float32Array,
  at: number,
  k: number,
  n: number,
  grade: number,
  sum: Float32Array,
): void {
  for (let p = 0; p < n; p++) {
    let hi = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < k; c++) hi = Math.max(hi, data[at + c * n + p]!);
    let total = 0;
    for (let c = 0; c < k; c++) total += Math.exp(data[at + c * n + p]! - hi);
    sum[p]! += Math.exp(data[at + grade * n + p]! - hi) / total;
  }
}

/**
 * `values` scaled so that their `low` and `high` percentiles (nearest rank) become 0 and 1,
 * clipped to 0..1; all zeros when those percentiles are equal. A few extreme pixels then neither
 * wash out the rest of the map nor make it all hot.
 */
export function robustUnit(values: Float32Array, low: number, high: number): Float32Array {
  const sorted = Float32Array.from(values).sort();
  const at = (q: number) => sorted[Math.round((q / 100) * (sorted.length - 1))]!;
  const lo = at(low);
  const span = at(high) - lo;
  return values.map((v) => (span > 0 ? Math.min(1, Math.max(0, (v - lo) / span)) : 0));
}

function tokenOutputs(spec: ManifestMember): string[] {
  return spec.outputs
    .map((o) => o.name)
    .filter((n) => /^tokens_l\d+$/.test(n))
    .sort((a, b) => Number(a.slice(8)) - Number(b.slice(8)));
}

async function createSession(
  spec: ManifestMember,
  bytes: Uint8Array,
  providers: readonly string[],
  options: EnsembleOptions,
  log: Logger,
): Promise<{ session: ort.InferenceSession; provider: string }> {
  const failures: string[] = [];
  for (const provider of providers) {
    try {
      const session = await ort.InferenceSession.create(bytes, {
        executionProviders: [provider],
        graphOptimizationLevel: "all",
        ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
        ...(options.interOpThreads ? { interOpNumThreads: options.interOpThreads } : {}),
      });
      return { session, provider };
    } catch (error) {
      const reason = firstLine(error);
      failures.push(`${provider}: ${reason}`);
      log.warn(
        { event: "inference.provider-unavailable", member: spec.name, provider, reason },
        `execution provider ${provider} cannot run member ${spec.name}; trying the next one`,
      );
    }
  }
  throw new InferenceError(
    "NO_PROVIDER",
    `member ${spec.name}: none of the execution providers [${providers.join(", ")}] could ` +
      `create a session (${failures.join("; ")}). onnxruntime-node bundles "cpu" and "webgpu"; ` +
      `"cuda" needs its provider libraries.`,
  );
}

function checkSessionNames(spec: ManifestMember, session: ort.InferenceSession): void {
  if (!session.inputNames.includes(spec.input.name)) {
    throw new InferenceError(
      "MODEL_INVALID",
      `member ${spec.name}: the ONNX graph has inputs [${session.inputNames}], the manifest ` +
        `says ${spec.input.name}`,
    );
  }
  const missing = spec.outputs.map((o) => o.name).filter((n) => !session.outputNames.includes(n));
  if (missing.length > 0) {
    throw new InferenceError(
      "MODEL_INVALID",
      `member ${spec.name}: the ONNX graph lacks outputs [${missing}] listed in the manifest`,
    );
  }
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const line = text.split("\n").find((l) => l.trim() !== "") ?? text;
  return line.length > 600 ? `${line.slice(0, 600)}…` : line;
}

/** NCHW float32 from grey crops: every channel = grey * scale + offset. */
function toFloatNchw(
  crops: readonly Crop[],
  channels: number,
  pixels: number,
  scale: number,
  offset: number,
): Float32Array {
  const lut = new Float32Array(256);
  for (let g = 0; g < 256; g++) lut[g] = g * scale + offset;
  const out = new Float32Array(crops.length * channels * pixels);
  crops.forEach((crop, n) => {
    for (let c = 0; c < channels; c++) {
      const base = (n * channels + c) * pixels;
      if (crop instanceof Uint8Array) {
        for (let p = 0; p < pixels; p++) out[base + p] = lut[crop[p]!]!;
      } else {
        for (let p = 0; p < pixels; p++) out[base + p] = crop[p]! * scale + offset;
      }
    }
  });
  return out;
}

/**
 * The members' calibrated probabilities of one knee pooled by the manifest's ensemble rule: their
 * mean, or their normalised geometric mean (softmax of the mean log-probability, floored at 1e-12
 * as in models/metrics.py `pool`).
 */
export function poolProbabilities(
  members: readonly (readonly number[])[],
  rule: EnsembleRule,
): number[] {
  if (members.length === 0) throw new Error("no member probabilities to pool");
  const k = members[0]!.length;
  const acc = new Array<number>(k).fill(0);
  const logMean = rule === "mean_calibrated_log_probabilities";
  for (const p of members) {
    if (p.length !== k)
      throw new Error(`member probabilities of length ${p.length}, expected ${k}`);
    for (let c = 0; c < k; c++) {
      acc[c]! += (logMean ? Math.log(Math.max(p[c]!, 1e-12)) : p[c]!) / members.length;
    }
  }
  return logMean ? softmax(acc) : acc;
}

/**
 * The ensemble temperature applied to a probability vector: p^(1/T) renormalised, i.e.
 * softmax(log p / T); T = 1 returns `p` itself. The argmax does not change.
 */
export function sharpen(p: readonly number[], temperature: number): number[] {
  if (temperature === 1) return [...p];
  return softmax(
    p.map((v) => Math.log(Math.max(v, 1e-12))),
    temperature,
  );
}

/** softmax(logits / temperature), in float64. */
export function softmax(logits: readonly number[], temperature = 1): number[] {
  const z = logits.map((v) => v / temperature);
  const max = Math.max(...z);
  const e = z.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** Index of the largest value (the first one on ties). */
export function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

interface Axis {
  i0: Int32Array;
  i1: Int32Array;
  w: Float32Array;
}
const axes = new Map<string, Axis>();

/** Source indices and weights of a half-pixel bilinear resize from `n` to `size` samples. */
function axis(n: number, size: number): Axis {
  const key = `${n}>${size}`;
  let a = axes.get(key);
  if (!a) {
    a = { i0: new Int32Array(size), i1: new Int32Array(size), w: new Float32Array(size) };
    const scale = n / size;
    for (let o = 0; o < size; o++) {
      const src = Math.max(0, (o + 0.5) * scale - 0.5);
      const i0 = Math.min(Math.floor(src), n - 1);
      a.i0[o] = i0;
      a.i1[o] = Math.min(i0 + 1, n - 1);
      a.w[o] = src - i0;
    }
    axes.set(key, a);
  }
  return a;
}

/** Adds the bilinear resize of the h×w map at `src[offset..]` to the H×W `acc`. */
export function upsampleAdd(
  src: Float32Array,
  offset: number,
  h: number,
  w: number,
  acc: Float32Array,
  H: number,
  W: number,
): void {
  const ya = axis(h, H);
  const xa = axis(w, W);
  // Horizontal pass over the h source rows, then the vertical blend per output row.
  const rows = new Float32Array(h * W);
  for (let y = 0; y < h; y++) {
    const r = offset + y * w;
    for (let x = 0; x < W; x++) {
      const wx = xa.w[x]!;
      rows[y * W + x] = src[r + xa.i0[x]!]! * (1 - wx) + src[r + xa.i1[x]!]! * wx;
    }
  }
  for (let y = 0; y < H; y++) {
    const wy = ya.w[y]!;
    const r0 = ya.i0[y]! * W;
    const r1 = ya.i1[y]! * W;
    const o = y * W;
    for (let x = 0; x < W; x++) acc[o + x]! += rows[r0 + x]! * (1 - wy) + rows[r1 + x]! * wy;
  }
}
