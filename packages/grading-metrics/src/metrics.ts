/**
 * Metrics of 5-grade ordinal classification, defined exactly as the model toolkit's
 * models/metrics.py (confusion matrix rows = truth, columns = prediction; quadratic weighted
 * Cohen's kappa) and named as its report, so `kneegrade evaluate` and `python3 -m models.evaluate`
 * agree and write one document (@kneegrade/contracts `evaluationDocument`).
 */
export interface EvaluationMetrics {
  n: number;
  accuracy: number;
  qwk: number;
  mae: number;
  /** Accuracy within each true grade; null for a grade with no image. */
  per_grade_accuracy: (number | null)[];
  /** Rows: the true grade; columns: the predicted grade. */
  confusion: number[][];
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
    accuracy: n ? correct / n : 0,
    qwk: quadraticWeightedKappa(truth, predicted, k),
    mae,
    per_grade_accuracy: cm.map((row, g) => {
      const total = row.reduce((a, b) => a + b, 0);
      return total ? row[g]! / total : null;
    }),
    confusion: cm,
  };
}

/** numpy.linspace(0, 1, bins + 1): `i * (1 / bins)`, last edge exactly 1 (as numpy computes it). */
function edges(bins: number): number[] {
  const step = 1 / bins;
  return Array.from({ length: bins + 1 }, (_, i) => (i === bins ? 1 : i * step));
}

/** Index of the first largest value (numpy's argmax). */
function argmax(p: readonly number[]): number {
  let best = 0;
  for (let c = 1; c < p.length; c++) if (p[c]! > p[best]!) best = c;
  return best;
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

/**
 * Expected calibration error of the top-class confidence over `bins` equal-width bins (lo, hi]:
 * sum over bins of (share of images) × |mean confidence − accuracy|; models/metrics.py `ece`.
 */
export function expectedCalibrationError(
  probabilities: readonly (readonly number[])[],
  truth: readonly number[],
  bins = 15,
): number {
  const n = probabilities.length;
  const conf = probabilities.map((p) => Math.max(...p));
  const correct = probabilities.map((p, i) => (argmax(p) === truth[i] ? 1 : 0));
  const e = edges(bins);
  let total = 0;
  for (let b = 0; b < bins; b++) {
    const lo = e[b]!;
    const hi = e[b + 1]!;
    const inBin = conf.flatMap((c, i) => (c > lo && c <= hi ? [i] : []));
    if (inBin.length === 0) continue;
    total +=
      (inBin.length / n) *
      Math.abs(mean(inBin.map((i) => conf[i]!)) - mean(inBin.map((i) => correct[i]!)));
  }
  return total;
}

export interface ReliabilityBin {
  lo: number;
  hi: number;
  /** Images whose top-class confidence falls in the bin. */
  n: number;
  /** Their mean top-class confidence; null for an empty bin. */
  confidence: number | null;
  /** Their accuracy; null for an empty bin. */
  accuracy: number | null;
}

/**
 * The reliability diagram's bins: `bins` equal-width bins of the top-class confidence, (lo, hi]
 * except the first, [0, hi]; models/evaluate.py `reliability_bins`.
 */
export function reliabilityBins(
  probabilities: readonly (readonly number[])[],
  truth: readonly number[],
  bins = 10,
): ReliabilityBin[] {
  const conf = probabilities.map((p) => Math.max(...p));
  const pred = probabilities.map(argmax);
  const e = edges(bins);
  return Array.from({ length: bins }, (_, b) => {
    const lo = e[b]!;
    const hi = e[b + 1]!;
    const inBin = conf.flatMap((c, i) => ((lo > 0 ? c > lo : c >= lo) && c <= hi ? [i] : []));
    const n = inBin.length;
    return {
      lo,
      hi,
      n,
      confidence: n ? mean(inBin.map((i) => conf[i]!)) : null,
      accuracy: n ? mean(inBin.map((i) => (pred[i] === truth[i] ? 1 : 0))) : null,
    };
  });
}

export interface CalibrationMetrics {
  /** Expected calibration error, 15 bins (models/metrics.py `ece`). */
  ece: number;
  /** 10 reliability bins (models/evaluate.py `reliability_bins`). */
  reliability: ReliabilityBin[];
}

export function calibrationMetrics(
  probabilities: readonly (readonly number[])[],
  truth: readonly number[],
): CalibrationMetrics {
  return {
    ece: expectedCalibrationError(probabilities, truth, 15),
    reliability: reliabilityBins(probabilities, truth, 10),
  };
}
