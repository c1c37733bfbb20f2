/**
 * The localiser's second stage: does a found square look like an AP/PA knee joint? A small CNN
 * (assets/knee-verifier.onnx, trained from scratch by `python3 -m models.knee_verifier` on the
 * knee-kl crops as positives and negatives made from them and from the WG04 radiograph: bone
 * shafts and off-centre windows, other anatomy, background, rotated, upside-down and edge-on
 * knees) reads the 224-px CLAHE crop, area-resized to 56 px. Its measured figures are in
 * assets/knee-verifier.json and docs/GRADING.md. A knee is reported only when both stages agree.
 */

import { areaResize } from "@kneegrade/inference";
import * as ort from "onnxruntime-node";
import { squareOf, TRAINING_CROP_SIZE } from "./crop.ts";

const VERIFIER = new URL("../assets/knee-verifier.onnx", import.meta.url);
const SIZE = 56;

/**
 * Below this probability of "AP/PA knee joint" a found knee is not reported. Chosen on the real
 * clinical radiographs of realdx-dev (docs/GRADING.md): their AP knees read 0.49–0.99, the lateral
 * and foot/ankle views that pass the template stage 0.01–0.21; on the made negatives (held-out
 * crops, degraded or not) the verifier refuses the same at any threshold from 0.35 to 0.5.
 */
export const VERIFIER_MIN_PROBABILITY = 0.35;

export interface KneeVerdict {
  /** Probability that the crop is an AP/PA knee joint. */
  apKnee: number;
  /** … that there is no knee joint in it (shaft, other anatomy, background). */
  noKneeJoint: number;
  /** … that it is a knee, but not seen as an AP/PA view (rotated, upside down, edge-on). */
  notApView: number;
}

let session: Promise<ort.InferenceSession> | undefined;

/** The verifier's verdict on each 224-px CLAHE crop (as `cutKnee` makes them). */
export async function verifyKneeCrops(crops224: Uint8Array[]): Promise<KneeVerdict[]> {
  if (crops224.length === 0) return [];
  session ??= ort.InferenceSession.create(VERIFIER.pathname, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  const s = await session;
  const input = new Float32Array(crops224.length * SIZE * SIZE);
  for (const [i, crop] of crops224.entries()) {
    const small = areaResize(crop, squareOf(TRAINING_CROP_SIZE), squareOf(SIZE));
    for (let j = 0; j < small.length; j++) input[i * SIZE * SIZE + j] = small[j]! / 255;
  }
  const out = await s.run({
    image: new ort.Tensor("float32", input, [crops224.length, 1, SIZE, SIZE]),
  });
  const logits = out.logits!.data as Float32Array;
  return crops224.map((_, i) => {
    const l = [0, 1, 2].map((k) => logits[i * 3 + k]!);
    const max = Math.max(...l);
    const e = l.map((v) => Math.exp(v - max));
    const sum = e[0]! + e[1]! + e[2]!;
    return { apKnee: e[0]! / sum, noKneeJoint: e[1]! / sum, notApView: e[2]! / sum };
  });
}
