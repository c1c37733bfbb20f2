/**
 * The evaluation document: what `python3 -m models.evaluate` writes to eval.json and
 * `kneegrade evaluate --json` prints — the same keys, so one reader serves both. The toolkit
 * evaluates every member and the ensemble; `kneegrade evaluate` the ensemble alone, and adds the
 * model's identity and the charts it wrote. packages/contracts/evaluation.schema.json is this
 * schema as JSON Schema, for readers outside Node (evaluation.unit.test.ts keeps it current).
 */
import { z } from "zod";

/** The KL grades, in the order of every per-grade array and of the confusion matrix. */
export const EVALUATION_LABELS = ["KL0", "KL1", "KL2", "KL3", "KL4"] as const;

const share = z.number().min(0).max(1);
const count = z.int().min(0);
const perGrade = <T extends z.ZodType>(item: T) => z.array(item).length(EVALUATION_LABELS.length);
const range = z.tuple([z.number(), z.number()]);

export const reliabilityBin = z.strictObject({
  lo: share,
  hi: share,
  n: count.describe(
    "Images whose top-class confidence falls in the bin: (lo, hi], the first [0, hi].",
  ),
  confidence: share.nullable().describe("Their mean top-class confidence; null for an empty bin."),
  accuracy: share.nullable().describe("Their accuracy; null for an empty bin."),
});

/** One model's figures (a member's or the ensemble's) on the evaluated images. */
export const modelEvaluation = z
  .strictObject({
    n: count,
    accuracy: share,
    qwk: z.number().min(-1).max(1).describe("Quadratic weighted Cohen's kappa."),
    mae: z
      .number()
      .min(0)
      .max(EVALUATION_LABELS.length - 1)
      .describe("Mean absolute error in grades."),
    ece: share.describe(
      "Expected calibration error of the top-class confidence, 15 equal-width bins.",
    ),
    per_grade_accuracy: perGrade(share.nullable()).describe(
      "Accuracy within each true grade; null for a grade with no image.",
    ),
    confusion: perGrade(perGrade(count)).describe(
      "Rows: the true grade; columns: the predicted grade.",
    ),
    reliability: z
      .array(reliabilityBin)
      .describe("10 equal-width bins of the top-class confidence."),
    temperature: z
      .number()
      .positive()
      .optional()
      .describe("The calibration temperature (a member's, or the ensemble's after pooling)."),
    backend: z
      .string()
      .optional()
      .describe("What ran a member: onnxruntime, onnxruntime-node or torch."),
    rule: z.string().optional().describe("The ensemble rule, from the manifest."),
    interval: z
      .strictObject({
        level: share,
        resamples: z.int().positive(),
        seed: z.int(),
        accuracy: range,
        qwk: range,
        mae: range,
      })
      .optional()
      .describe("Percentile bootstrap intervals over resamples of the images."),
  })
  .meta({ id: "ModelEvaluation", title: "The figures of one model" });

export const evaluationDocument = z
  .strictObject({
    data: z.string().describe("The evaluated folder, laid out <grade>/*.png."),
    models: z.string().describe("The model folder."),
    status: z
      .string()
      .nullable()
      .describe('The manifest\'s status ("trained", "smoke"); null for a training run folder.'),
    labels: z.tuple([
      z.literal("KL0"),
      z.literal("KL1"),
      z.literal("KL2"),
      z.literal("KL3"),
      z.literal("KL4"),
    ]),
    results: z
      .object({ ensemble: modelEvaluation })
      .catchall(modelEvaluation)
      .describe("Per model by name; always the ensemble."),
    model: z
      .strictObject({ version: z.string(), status: z.string(), rule: z.string() })
      .optional()
      .describe("The model's identity (`kneegrade evaluate`)."),
    png: z
      .strictObject({ confusion: z.string(), reliability: z.string() })
      .optional()
      .describe("The charts written (`kneegrade evaluate --png-dir`)."),
  })
  .meta({
    title: "kneegrade evaluation",
    description:
      "Written by `python3 -m models.evaluate` (eval.json) and `kneegrade evaluate --json`.",
  });

export type ModelEvaluation = z.infer<typeof modelEvaluation>;
export type EvaluationDocument = z.infer<typeof evaluationDocument>;

/** evaluation.schema.json's content. */
export function evaluationJsonSchema(): string {
  return `${JSON.stringify(z.toJSONSchema(evaluationDocument), null, 2)}\n`;
}
