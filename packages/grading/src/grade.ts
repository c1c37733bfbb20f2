/**
 * One radiograph, from its Part 10 bytes to graded knees (or a recorded reason why not):
 * header → pixels (decode, Modality LUT, VOI, MONOCHROME1) → knee localisation and laterality →
 * crops like the training crops → the ensemble. Pure composition of the shared packages; the
 * worker service, `kneegrade grade`/`evaluate` and the demo use it.
 */
import { performance } from "node:perf_hooks";
import { DicomParseError } from "@kneegrade/dicom";
import type { InputSize, KneePrediction, LocaliserSettings } from "@kneegrade/inference";
import {
  ARTHROPLASTY_NOT_GRADED,
  type FoundKnee,
  findKnees,
  type KneeRefusalCode,
  type KneeTemplate,
  parseKneeTemplates,
} from "@kneegrade/knee";
import { PixelDataError, readRadiographFile } from "@kneegrade/pixels";
import sharp from "sharp";

/** What the grading needs of a model: its input size and batched prediction. */
export interface KneePredictor {
  inputSize: InputSize;
  predict(inputs: Float32Array[]): Promise<KneePrediction[]>;
  /** The model's localiser settings (manifest `localiser`); the localiser's defaults without. */
  localiser?: LocaliserSettings;
}

const parsedTemplates = new WeakMap<object, KneeTemplate[]>();

/** findKnees' options from a model's localiser settings (its template parsed once). */
function localiserOptions(settings: LocaliserSettings | undefined) {
  if (!settings) return {};
  let templates: KneeTemplate[] | undefined;
  if (settings.template !== undefined) {
    templates = parsedTemplates.get(settings);
    if (!templates) {
      templates = parseKneeTemplates(settings.template, "the model's localiser template");
      parsedTemplates.set(settings, templates);
    }
  }
  return {
    minScore: settings.minScore,
    pairMinScore: settings.pairMinScore,
    lowConfidenceScore: settings.lowConfidenceScore,
    verifierMinProbability: settings.verifierMinProbability,
    ...(templates ? { templates } : {}),
  };
}

export interface GradedKnee extends Omit<FoundKnee, "input"> {
  prediction: KneePrediction;
}

/** A knee that was found but must not get a grade (a prosthesis at the joint). */
export interface NotGradedKnee extends Omit<FoundKnee, "input" | "crop224"> {
  code: "ARTHROPLASTY";
  /** In the reader's words: "knee arthroplasty — not graded". */
  reason: string;
}

export type FailureCode =
  | "UNREADABLE_DICOM"
  | "UNSUPPORTED_TRANSFER_SYNTAX"
  | "UNSUPPORTED_IMAGE"
  | "CORRUPT_PIXEL_DATA"
  | "NO_PIXEL_DATA";

export interface StageTimings {
  decode: number;
  localise: number;
  predict: number;
}

export type InstanceResult =
  | {
      outcome: "GRADED";
      knees: GradedKnee[];
      /** Knees found and reported without a grade (arthroplasty). */
      notGraded: NotGradedKnee[];
      warnings: string[];
      timingsMs: StageTimings;
    }
  | {
      outcome: "REFUSED";
      code: KneeRefusalCode;
      reason: string;
      warnings: string[];
      timingsMs: StageTimings;
    }
  | {
      outcome: "FAILED";
      code: FailureCode;
      reason: string;
      warnings: string[];
      timingsMs: StageTimings;
    };

const round = (ms: number) => Math.round(ms * 10) / 10;

/** What localisation needs of a model: its input size and localiser settings. */
export type LocaliserModel = Pick<KneePredictor, "inputSize" | "localiser">;

/**
 * A radiograph after decoding and localisation, before inference: its knees with their model
 * inputs, or the instance's final outcome when it stopped earlier (refused, failed).
 */
export type PreparedInstance =
  | { outcome: "FOUND"; knees: FoundKnee[]; warnings: string[]; timingsMs: StageTimings }
  | Exclude<InstanceResult, { outcome: "GRADED" }>;

export async function gradeDicom(
  bytes: Uint8Array,
  predictor: KneePredictor,
): Promise<InstanceResult> {
  return gradePrepared(await prepareDicom(bytes, predictor), predictor);
}

/**
 * The CPU-heavy first half of {@link gradeDicom} — decode, localise, verify, crop — with no model
 * session: it can run in another thread than the inference (the worker's preparation threads).
 */
export async function prepareDicom(
  bytes: Uint8Array,
  model: LocaliserModel,
): Promise<PreparedInstance> {
  const timingsMs: StageTimings = { decode: 0, localise: 0, predict: 0 };
  const failed = (code: FailureCode, reason: string): PreparedInstance => ({
    outcome: "FAILED",
    code,
    reason,
    warnings: [],
    timingsMs,
  });
  let t = performance.now();
  let file: Awaited<ReturnType<typeof readRadiographFile>>;
  try {
    file = await readRadiographFile(bytes); // one parse: header and pixels
  } catch (error) {
    if (error instanceof DicomParseError) return failed("UNREADABLE_DICOM", error.message);
    if (error instanceof PixelDataError) return failed(error.code, error.message);
    throw error;
  }
  const { header, radiograph } = file;
  timingsMs.decode = round(performance.now() - t);
  t = performance.now();
  const spacing = radiograph.spacing;
  if (model.inputSize.height !== model.inputSize.width) {
    throw new Error("the model's input must be square");
  }
  const findings = await findKnees(
    {
      width: radiograph.width,
      height: radiograph.height,
      data: radiograph.display,
      spacingMm: spacing ? (spacing.rowMm + spacing.colMm) / 2 : null,
    },
    header,
    model.inputSize.width,
    localiserOptions(model.localiser),
  );
  timingsMs.localise = round(performance.now() - t);
  if (!findings.ok) {
    return {
      outcome: "REFUSED",
      code: findings.code,
      reason: findings.reason,
      warnings: [],
      timingsMs,
    };
  }
  return { outcome: "FOUND", knees: findings.knees, warnings: findings.warnings, timingsMs };
}

/** The second half of {@link gradeDicom}: the ensemble's grade of each prepared knee. */
export async function gradePrepared(
  prepared: PreparedInstance,
  predictor: KneePredictor,
): Promise<InstanceResult> {
  if (prepared.outcome !== "FOUND") return prepared;
  const timingsMs = { ...prepared.timingsMs };
  const t = performance.now();
  const gradable = prepared.knees.filter((k) => !k.arthroplasty);
  const predictions =
    gradable.length > 0 ? await predictor.predict(gradable.map((k) => k.input)) : [];
  timingsMs.predict = round(performance.now() - t);
  const knees = gradable.map(({ input: _input, ...knee }, i) => ({
    ...knee,
    prediction: predictions[i]!,
  }));
  const notGraded = prepared.knees
    .filter((k) => k.arthroplasty)
    .map(({ input: _input, crop224: _crop, ...knee }) => ({
      ...knee,
      code: "ARTHROPLASTY" as const,
      reason: ARTHROPLASTY_NOT_GRADED,
    }));
  return { outcome: "GRADED", knees, notGraded, warnings: prepared.warnings, timingsMs };
}

/** Where the knee's crop square lies in the image, in pixels (and its side in mm, when known). */
export function kneeRegion(knee: Pick<FoundKnee, "box" | "sideMm">) {
  return {
    x: Math.round(knee.box.cx - knee.box.side / 2),
    y: Math.round(knee.box.cy - knee.box.side / 2),
    width: Math.round(knee.box.side),
    height: Math.round(knee.box.side),
    sideMm: knee.sideMm === null ? null : Math.round(knee.sideMm * 10) / 10,
  };
}

/** The crop a knee was graded on, as PNG (224 px grey). */
export async function cropPng(knee: GradedKnee): Promise<Buffer> {
  const side = Math.round(Math.sqrt(knee.crop224.length));
  return sharp(knee.crop224, { raw: { width: side, height: side, channels: 1 } })
    .toColourspace("b-w")
    .png()
    .toBuffer();
}

/** The heat map of the predicted grade, 0..1 mapped to 0..255, as PNG (the model's input size). */
export async function heatmapPng(knee: GradedKnee): Promise<Buffer> {
  const { width, height, data } = knee.prediction.heatmap;
  const grey = Uint8Array.from(data, (v) => Math.round(Math.min(1, Math.max(0, v)) * 255));
  return sharp(grey, { raw: { width, height, channels: 1 } })
    .toColourspace("b-w")
    .png()
    .toBuffer();
}
