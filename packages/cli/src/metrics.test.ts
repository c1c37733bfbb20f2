import { expect, it } from "vitest";
import { evaluationMetrics, quadraticWeightedKappa } from "./metrics.ts";

it("computes accuracy, MAE, per-grade accuracy and the confusion matrix", () => {
  const m = evaluationMetrics([0, 0, 1, 2, 4], [0, 1, 1, 2, 2]);
  expect(m.n).toBe(5);
  expect(m.overall_accuracy).toBeCloseTo(0.6);
  expect(m.mae).toBeCloseTo(0.6);
  expect(m.per_grade_accuracy).toEqual([0.5, 1, 1, null, 0]);
  expect(m.confusion_matrix[0]).toEqual([1, 1, 0, 0, 0]);
  expect(m.confusion_matrix[4]).toEqual([0, 0, 1, 0, 0]);
});

it("matches the quadratic weighted kappa of models/metrics.py", () => {
  // Values from /usr/bin/python3 -c "from models.metrics import qwk; print(qwk([...], [...]))".
  expect(quadraticWeightedKappa([0, 0, 1, 2, 4], [0, 1, 1, 2, 2])).toBeCloseTo(
    0.647887323943662,
    12,
  );
  expect(quadraticWeightedKappa([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])).toBe(1);
  expect(quadraticWeightedKappa([0, 1, 2, 3, 4], [4, 3, 2, 1, 0])).toBeCloseTo(-1, 10);
  expect(quadraticWeightedKappa([], [])).toBe(0);
});
