import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { evaluationDocument, evaluationJsonSchema } from "./evaluation.ts";

const SCHEMA_FILE = new URL("../evaluation.schema.json", import.meta.url);

const figures = {
  n: 3,
  accuracy: 2 / 3,
  qwk: 0.5,
  mae: 1 / 3,
  ece: 0.2,
  per_grade_accuracy: [1, null, 0.5, null, null],
  confusion: [
    [1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 1, 1, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
  ],
  reliability: [{ lo: 0, hi: 0.1, n: 0, confidence: null, accuracy: null }],
};
const doc = {
  data: "val",
  models: "models/dist",
  status: "trained",
  labels: ["KL0", "KL1", "KL2", "KL3", "KL4"],
  results: { ensemble: { ...figures, rule: "mean", temperature: 0.8 } },
};

describe("the evaluation document", () => {
  it("is committed as JSON Schema, current with the zod schema", () => {
    expect(readFileSync(SCHEMA_FILE, "utf8"), "run `npm run contracts:schema`").toBe(
      evaluationJsonSchema(),
    );
  });

  it("takes the toolkit's keys and refuses others", () => {
    expect(evaluationDocument.parse(doc)).toEqual(doc);
    const { accuracy, confusion, ...rest } = figures;
    const renamed = { ...rest, overall_accuracy: accuracy, confusion_matrix: confusion };
    expect(evaluationDocument.safeParse({ ...doc, results: { ensemble: renamed } }).success).toBe(
      false,
    );
    expect(evaluationDocument.safeParse({ ...doc, results: { member: figures } }).success).toBe(
      false,
    );
    const short = { ...figures, per_grade_accuracy: [1, null, 0.5] };
    expect(evaluationDocument.safeParse({ ...doc, results: { ensemble: short } }).success).toBe(
      false,
    );
  });
});
