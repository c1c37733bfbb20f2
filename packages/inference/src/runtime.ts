/**
 * The PIM ensemble in onnxruntime-node: batched prediction of preprocessed 8-bit grey knee crops,
 * calibrated ensemble probabilities and a class heat map per knee. It composes the members'
 * sessions (session.ts: provider fallback), the probability maths (pooling.ts) and the heat map
 * (heatmap.ts).
 */
import { performance } from "node:perf_hooks";
import { createLogger, type Logger } from "@kneegrade/log";
import * as ort from "onnxruntime-node";
import { areaResize } from "./area.ts";
import { InferenceError } from "./errors.ts";
import { classHeatmap } from "./heatmap.ts";
import { cropSize, type LocaliserSettings, type ModelManifest, readModel } from "./manifest.ts";
import { argmax, poolProbabilities, sharpen, softmax } from "./pooling.ts";
import { type LoadedMember, openMembers, type SessionThreads } from "./session.ts";
import type {
  Crop,
  EnsembleMember,
  InputSize,
  KneePrediction,
  MemberPrediction,
  MemberTiming,
  PredictTimings,
  RawMemberOutputs,
} from "./types.ts";

// What the ensemble takes and gives, beside it for modules that import the runtime by path.
export type { Crop, KneePrediction } from "./types.ts";

export interface EnsembleOptions extends SessionThreads {
  modelDir: string;
  /**
   * Execution providers in order of preference, e.g. ["webgpu", "cuda", "cpu"]. Each member gets
   * the first one whose session can be created (each is tried alone). Default ["cpu"].
   */
  providers?: string[];
  /** Most crops per session run; larger predict calls are split. Default 8. */
  maxBatch?: number;
  /** Accept a status "smoke" model (tests, benchmarks). Never in production. */
  allowTestModel?: boolean;
  logger?: Logger;
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
  private readonly loaded: LoadedMember[];
  private readonly labels: string[];
  private readonly inflight = new Set<Promise<unknown>>();
  private closed = false;

  private constructor(
    manifest: ModelManifest,
    version: string,
    loaded: LoadedMember[],
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

    const loaded = await openMembers(model.manifest.members, model.files, providers, options, log);
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
      heatmap: classHeatmap(raw, this.loaded, i, grade, this.inputSize),
    };
  }
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
