import { expect, it } from "vitest";
import {
  calibrationMetrics,
  evaluationMetrics,
  expectedCalibrationError,
  quadraticWeightedKappa,
  reliabilityBins,
} from "./metrics.ts";

it("computes accuracy, MAE, per-grade accuracy and the confusion matrix", () => {
  const m = evaluationMetrics([0, 0, 1, 2, 4], [0, 1, 1, 2, 2]);
  expect(m.n).toBe(5);
  expect(m.accuracy).toBeCloseTo(0.6);
  expect(m.mae).toBeCloseTo(0.6);
  expect(m.per_grade_accuracy).toEqual([0.5, 1, 1, null, 0]);
  expect(m.confusion[0]).toEqual([1, 1, 0, 0, 0]);
  expect(m.confusion[4]).toEqual([0, 0, 1, 0, 0]);
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

// Top-class confidences 0.9 (right), 0.6 (wrong), 0.55 (right), 0.3 (a tie: argmax is the first,
// so wrong) and 0.2 (flat: KL0, right). 0.6 and 0.2 sit on bin edges.
const PROBS = [
  [0.9, 0.05, 0.05, 0, 0],
  [0.1, 0.6, 0.1, 0.1, 0.1],
  [0.2, 0.2, 0.55, 0.05, 0],
  [0.3, 0.3, 0.2, 0.1, 0.1],
  [0.2, 0.2, 0.2, 0.2, 0.2],
];
const TRUTH = [0, 2, 2, 1, 0];

it("matches the ECE of models/metrics.py (15 equal-width bins, (lo, hi])", () => {
  // Values from /usr/bin/python3 -c "from models.metrics import ece; print(repr(ece(np.array(P), np.array(y))))".
  // By hand: (0.9: 1/5 × 0.1) + (0.55, 0.6: 2/5 × |0.575 − 0.5|) + (0.3: 1/5 × 0.3) + (0.2: 1/5 × 0.8).
  expect(expectedCalibrationError(PROBS, TRUTH)).toBeCloseTo(0.27, 12);
  expect(expectedCalibrationError(PROBS.slice(0, 4), TRUTH.slice(0, 4))).toBeCloseTo(
    0.13749999999999996,
    12,
  );
  expect(expectedCalibrationError([[0, 0, 1, 0, 0]], [2])).toBe(0);
  expect(calibrationMetrics(PROBS, TRUTH).ece).toBe(expectedCalibrationError(PROBS, TRUTH));
});

it("bins confidences like models/evaluate.py reliability_bins (10 bins, the first closed)", () => {
  const bins = reliabilityBins(PROBS, TRUTH);
  expect(bins).toHaveLength(10);
  expect(calibrationMetrics(PROBS, TRUTH).reliability).toEqual(bins);
  // numpy.linspace edges, bit for bit.
  expect(bins[2]).toMatchObject({ lo: 0.2, hi: 0.30000000000000004 });
  expect(bins[9]).toMatchObject({ lo: 0.9, hi: 1 });
  expect(bins.map((b) => b.n)).toEqual([0, 1, 1, 0, 0, 2, 0, 0, 1, 0]);
  expect(bins[0]).toEqual({ lo: 0, hi: 0.1, n: 0, confidence: null, accuracy: null });
  expect(bins[1]).toMatchObject({ confidence: 0.2, accuracy: 1 });
  expect(bins[2]).toMatchObject({ confidence: 0.3, accuracy: 0 });
  expect(bins[5]!.confidence).toBeCloseTo(0.575, 12);
  expect(bins[5]!.accuracy).toBe(0.5);
  expect(bins[8]).toMatchObject({ confidence: 0.9, accuracy: 1 });
});
