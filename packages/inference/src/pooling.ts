/**
 * How the members' outputs become one knee's probabilities: per-member softmax with its
 * temperature, pooling by the manifest's ensemble rule, the ensemble temperature, and the grade.
 * The same maths as the toolkit's models/metrics.py, so Node and Python grade alike.
 */
import type { EnsembleRule } from "./manifest.ts";

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
