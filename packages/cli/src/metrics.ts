/**
 * Metrics of 5-grade ordinal classification, defined exactly as the model toolkit's
 * models/metrics.py (confusion matrix rows = truth, columns = prediction; quadratic weighted
 * Cohen's kappa), so `kneegrade evaluate` and `python3 -m models.evaluate` agree.
 */
export interface EvaluationMetrics {
  n: number;
  overall_accuracy: number;
  qwk: number;
  mae: number;
  /** Accuracy within each true grade; null for a grade with no image. */
  per_grade_accuracy: (number | null)[];
  confusion_matrix: number[][];
}

export function confusion(truth: number[], predicted: number[], k = 5): number[][] {
  const cm = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  truth.forEach((t, i) => {
    cm[t]![predicted[i]!]! += 1;
  });
  return cm;
}

export function quadraticWeightedKappa(truth: number[], predicted: number[], k = 5): number {
  const cm = confusion(truth, predicted, k);
  const n = truth.length;
  if (n === 0) return 0;
  const rows = cm.map((r) => r.reduce((a, b) => a + b, 0));
  const cols = cm[0]!.map((_, j) => cm.reduce((a, r) => a + r[j]!, 0));
  let observed = 0;
  let expected = 0;
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const w = (i - j) ** 2 / (k - 1) ** 2;
      observed += w * cm[i]![j]!;
      expected += (w * rows[i]! * cols[j]!) / n;
    }
  }
  return expected > 0 ? 1 - observed / expected : 0;
}

export function evaluationMetrics(truth: number[], predicted: number[], k = 5): EvaluationMetrics {
  const cm = confusion(truth, predicted, k);
  const n = truth.length;
  const correct = truth.filter((t, i) => t === predicted[i]).length;
  const mae = n ? truth.reduce((a, t, i) => a + Math.abs(t - predicted[i]!), 0) / n : 0;
  return {
    n,
    overall_accuracy: n ? correct / n : 0,
    qwk: quadraticWeightedKappa(truth, predicted, k),
    mae,
    per_grade_accuracy: cm.map((row, g) => {
      const total = row.reduce((a, b) => a + b, 0);
      return total ? row[g]! / total : null;
    }),
    confusion_matrix: cm,
  };
}
