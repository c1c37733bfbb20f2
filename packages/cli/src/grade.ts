/**
 * Offline grading: `kneegrade grade <files|dirs>` (DICOM radiographs, or PNG/JPEG images taken as
 * already-cropped knees) and `kneegrade evaluate <dir>` (the `<grade>/*.png` layout), with the same
 * model, decoding and preprocessing as the worker. Nothing is stored or sent.
 */
import { mkdir, readdir, readFile } from "node:fs/promises";
import { extname, join, relative } from "node:path";
import { EVALUATION_LABELS, type EvaluationDocument } from "@kneegrade/contracts";
import {
  gradeDicom,
  type InstanceResult,
  type KneePredictor,
  kneeRegion,
  openPredictor,
} from "@kneegrade/grading";
import {
  type CalibrationMetrics,
  calibrationMetrics,
  confusionSvg,
  type EvaluationMetrics,
  evaluationMetrics,
  reliabilitySvg,
} from "@kneegrade/grading-metrics";
import type { Ensemble, KneePrediction } from "@kneegrade/inference";
import { cropFromImageFile } from "@kneegrade/knee";
import type { Logger } from "@kneegrade/log";
import { SingleBar } from "cli-progress";
import Table from "cli-table3";
import sharp from "sharp";

const IMAGE_EXTENSIONS = new Set([".png", ".jpg", ".jpeg", ".webp"]);

export interface ModelOptions {
  modelDir: string;
  providers: string[];
  threads: number;
  maxBatch: number;
  allowTestModel: boolean;
}

export const NOTICE =
  "Device-generated result, unverified: for review by a radiologist, not a diagnosis.";
export const TEST_MODEL_NOTICE =
  'TEST MODEL (manifest status "smoke"): a test model trained briefly on a CPU, not validated: its grades mean nothing clinically.';

/** The worker's ensemble and predictor, with no wait for other callers (one caller here). */
export async function openModel(o: ModelOptions, log: Logger) {
  const opened = await openPredictor(
    {
      MODEL_DIR: o.modelDir,
      INFERENCE_PROVIDERS: o.providers,
      INFERENCE_THREADS: o.threads,
      INFERENCE_MAX_BATCH: o.maxBatch,
      INFERENCE_MAX_WAIT_MS: 0,
      ALLOW_TEST_MODEL: o.allowTestModel,
    },
    log,
  );
  const { ensemble } = opened;
  const model = {
    version: ensemble.version,
    status: ensemble.manifest.status,
    providers: opened.providers,
    testModel: ensemble.manifest.status === "smoke",
  };
  return { ...opened, model, modelDir: o.modelDir };
}

function progress(total: number, label: string) {
  if (!process.stderr.isTTY || total < 2) return { tick() {}, stop() {} };
  const bar = new SingleBar({
    format: `${label} [{bar}] {value}/{total} {percentage}% | {eta_formatted} left`,
    stream: process.stderr,
    hideCursor: true,
  });
  bar.start(total, 0);
  return { tick: () => bar.increment(), stop: () => bar.stop() };
}

export interface GradedFile {
  file: string;
  kind: "dicom" | "image";
  outcome: InstanceResult["outcome"];
  code?: string;
  reason?: string;
  warnings: string[];
  knees: {
    laterality: "R" | "L" | "U";
    lateralitySource: string;
    grade: number;
    label: string;
    probabilities: number[];
    localisationScore: number | null;
    lowConfidence: boolean;
    region: { x: number; y: number; width: number; height: number; sideMm: number | null } | null;
  }[];
  /** Knees found but not graded: a knee arthroplasty ("knee arthroplasty — not graded"). */
  notGraded: {
    laterality: "R" | "L" | "U";
    lateralitySource: string;
    code: string;
    reason: string;
    localisationScore: number;
    region: { x: number; y: number; width: number; height: number; sideMm: number | null };
  }[];
}

const kneeOf = (p: KneePrediction) => ({
  grade: p.grade,
  label: p.label,
  probabilities: p.probabilities.map((v) => Math.round(v * 1e6) / 1e6),
});

export async function gradeFiles(files: string[], predictor: KneePredictor): Promise<GradedFile[]> {
  const results: GradedFile[] = [];
  const bar = progress(files.length, "grading");
  try {
    for (const file of files) {
      const bytes = new Uint8Array(await readFile(file));
      if (IMAGE_EXTENSIONS.has(extname(file).toLowerCase())) {
        const crop = await cropFromImageFile(bytes, predictor.inputSize.width);
        const [p] = await predictor.predict([crop.input]);
        results.push({
          file,
          kind: "image",
          outcome: "GRADED",
          warnings: [
            "an image file is taken as an already cropped knee: not localised, side unknown",
          ],
          knees: [
            {
              laterality: "U",
              lateralitySource: "not known for an image file",
              ...kneeOf(p!),
              localisationScore: null,
              lowConfidence: false,
              region: null,
            },
          ],
          notGraded: [],
        });
      } else {
        const r = await gradeDicom(bytes, predictor);
        results.push({
          file,
          kind: "dicom",
          outcome: r.outcome,
          ...(r.outcome === "GRADED" ? {} : { code: r.code, reason: r.reason }),
          warnings: r.warnings,
          knees:
            r.outcome === "GRADED"
              ? r.knees.map((k) => ({
                  laterality: k.laterality,
                  lateralitySource: k.lateralitySource,
                  ...kneeOf(k.prediction),
                  localisationScore: Math.round(k.score * 1000) / 1000,
                  lowConfidence: k.lowConfidence,
                  region: kneeRegion(k),
                }))
              : [],
          notGraded:
            r.outcome === "GRADED"
              ? r.notGraded.map((k) => ({
                  laterality: k.laterality,
                  lateralitySource: k.lateralitySource,
                  code: k.code,
                  reason: k.reason,
                  localisationScore: Math.round(k.score * 1000) / 1000,
                  region: kneeRegion(k),
                }))
              : [],
        });
      }
      bar.tick();
    }
  } finally {
    bar.stop();
  }
  return results;
}

const SIDE = { R: "right", L: "left", U: "side unknown" } as const;
const pct = (v: number) => `${(v * 100).toFixed(0)}%`;

export function formatGraded(
  results: GradedFile[],
  model: { version: string; status: string; testModel: boolean },
): string {
  const table = new Table({
    head: ["file", "knee", "KL", "P(KL0 / 1 / 2 / 3 / 4)", "notes"],
    style: { head: [], border: [] },
    wordWrap: true,
    colWidths: [null, null, null, null, 48] as unknown as number[],
  });
  const cwd = process.cwd();
  for (const r of results) {
    const name = relative(cwd, r.file) || r.file;
    if (r.outcome !== "GRADED") {
      table.push([name, "-", "-", "-", `${r.outcome.toLowerCase()}: ${r.code} — ${r.reason}`]);
      continue;
    }
    for (const k of r.knees) {
      const notes = [
        ...(k.lowConfidence ? ["low localisation confidence"] : []),
        ...(k.laterality === "U" || k.lateralitySource.includes("assum")
          ? [k.lateralitySource]
          : []),
      ];
      table.push([
        name,
        SIDE[k.laterality],
        String(k.grade),
        k.probabilities.map(pct).join(" / "),
        notes.join("; "),
      ]);
    }
    for (const k of r.notGraded) table.push([name, SIDE[k.laterality], "-", "-", k.reason]);
  }
  const lines = [`model ${model.version} (status ${model.status})`];
  if (model.testModel) lines.push(TEST_MODEL_NOTICE);
  lines.push(table.toString(), NOTICE);
  return lines.join("\n");
}

/** `<dir>/<grade>/*.png` (grade 0–4), sorted like the toolkit's `list_folder`. */
export async function listGradedFolder(
  dir: string,
  limitPerGrade?: number,
): Promise<{ file: string; grade: number }[]> {
  const items: { file: string; grade: number }[] = [];
  const grades = (await readdir(dir, { withFileTypes: true }))
    .filter((d) => d.isDirectory() && /^\d+$/.test(d.name))
    .map((d) => d.name)
    .sort();
  for (const g of grades) {
    let files = (await readdir(join(dir, g)))
      .filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase()))
      .sort();
    if (limitPerGrade !== undefined) files = files.slice(0, limitPerGrade);
    items.push(...files.map((f) => ({ file: join(dir, g, f), grade: Number(g) })));
  }
  if (items.length === 0) throw new Error(`no images under ${dir}/<grade>/`);
  return items;
}

/** `kneegrade evaluate`'s figures: the toolkit's metrics of the ensemble, with its calibration. */
export type Evaluation = EvaluationMetrics & CalibrationMetrics;

export interface EvaluatedImage {
  file: string;
  grade: number;
  predicted: number;
  /** The ensemble's calibrated probabilities (members pooled by the manifest's rule, then the ensemble temperature), unrounded. */
  probabilities: number[];
}

export async function evaluateFolder(
  dir: string,
  ensemble: Ensemble,
  options: { limitPerGrade?: number; batch?: number } = {},
): Promise<{ metrics: Evaluation; images: EvaluatedImage[] }> {
  const items = await listGradedFolder(dir, options.limitPerGrade);
  const batch = options.batch ?? 32;
  const predictions: KneePrediction[] = [];
  const bar = progress(items.length, "evaluating");
  try {
    for (let at = 0; at < items.length; at += batch) {
      const slice = items.slice(at, at + batch);
      const inputs = await Promise.all(
        slice.map(
          async (it) =>
            (await cropFromImageFile(await readFile(it.file), ensemble.inputSize.width)).input,
        ),
      );
      predictions.push(...(await ensemble.predict(inputs)));
      for (const _ of slice) bar.tick();
    }
  } finally {
    bar.stop();
  }
  const truth = items.map((it) => it.grade);
  if (truth.some((g) => g > 4)) throw new Error(`${dir}: grade folders must be 0–4`);
  const probabilities = predictions.map((p) => p.probabilities);
  const metrics = {
    ...evaluationMetrics(
      truth,
      predictions.map((p) => p.grade),
    ),
    ...calibrationMetrics(probabilities, truth),
  };
  const images = items.map((it, i) => ({
    file: it.file,
    grade: it.grade,
    predicted: predictions[i]!.grade,
    probabilities: probabilities[i]!,
  }));
  return { metrics, images };
}

/** `kneegrade evaluate --json`: the document `python3 -m models.evaluate` writes, for the ensemble. */
export function evaluationDocument(
  dir: string,
  opened: { ensemble: Ensemble; model: { version: string; status: string }; modelDir: string },
  metrics: Evaluation,
  charts?: { confusion: string; reliability: string },
): EvaluationDocument {
  const { rule, temperature } = opened.ensemble.manifest.ensemble;
  return {
    data: dir,
    models: opened.modelDir,
    status: opened.model.status,
    labels: [...EVALUATION_LABELS],
    // As the runtime and the toolkit apply it: a manifest without one scales by 1.
    results: { ensemble: { ...metrics, rule, temperature: temperature ?? 1 } },
    model: { version: opened.model.version, status: opened.model.status, rule },
    ...(charts ? { png: charts } : {}),
  };
}

/** `<dir>/confusion.png` and `<dir>/reliability.png` (SVG from @kneegrade/grading-metrics, rasterised by sharp). */
export async function writeEvaluationCharts(
  dir: string,
  m: Evaluation,
  model: { version: string; testModel: boolean },
): Promise<{ confusion: string; reliability: string }> {
  await mkdir(dir, { recursive: true });
  const heading = `ensemble, model ${model.version}${model.testModel ? " (TEST MODEL)" : ""}`;
  const out = { confusion: join(dir, "confusion.png"), reliability: join(dir, "reliability.png") };
  await sharp(Buffer.from(confusionSvg(m, heading)))
    .png()
    .toFile(out.confusion);
  await sharp(Buffer.from(reliabilitySvg(m, heading)))
    .png()
    .toFile(out.reliability);
  return out;
}

export function formatEvaluation(
  m: Evaluation,
  model: { version: string; testModel: boolean },
  charts?: { confusion: string; reliability: string },
): string {
  const lines = [`model ${model.version}${model.testModel ? ` — ${TEST_MODEL_NOTICE}` : ""}`];
  lines.push(
    `n ${m.n}  accuracy ${m.accuracy.toFixed(3)}  QWK ${m.qwk.toFixed(3)}  MAE ${m.mae.toFixed(3)}  ECE ${m.ece.toFixed(3)}`,
  );
  const per = new Table({
    head: ["", "KL0", "KL1", "KL2", "KL3", "KL4"],
    style: { head: [], border: [] },
  });
  per.push(["accuracy", ...m.per_grade_accuracy.map((v) => (v === null ? "-" : v.toFixed(3)))]);
  lines.push(per.toString());
  const cm = new Table({
    head: ["truth \\ predicted", "KL0", "KL1", "KL2", "KL3", "KL4"],
    style: { head: [], border: [] },
  });
  m.confusion.forEach((row, g) => {
    cm.push([`KL${g}`, ...row.map(String)]);
  });
  lines.push(cm.toString());
  if (charts) lines.push(`wrote ${charts.confusion} and ${charts.reliability}`);
  return lines.join("\n");
}
