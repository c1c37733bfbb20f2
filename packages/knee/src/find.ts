/**
 * From a decoded radiograph to the model inputs of its knees, or a recorded reason why not.
 */
import { detectArthroplasty } from "./arthroplasty.ts";
import { cutKnee, TRAINING_CROP_SIZE } from "./crop.ts";
import { assignLaterality, type LateralityHeader, type Side } from "./laterality.ts";
import type { GreyImage, KneeCandidate, KneeTemplate } from "./localise.ts";
import { localiseKneesOffThread, verifyKneeCropsOffThread } from "./localise-thread.ts";
import { VERIFIER_MIN_PROBABILITY } from "./verify.ts";

/** Below this knee score a found knee is graded but flagged for the reviewer. */
export const LOW_CONFIDENCE_SCORE = 0.6;

/**
 * A lone knee's mate square is verified as a knee from this score (the pair threshold is 0.42):
 * on the real dev radiographs the other mate squares (beside single knees, or beside a square the
 * verifier refused) score -0.07–0.44 and the verifier reads none as a knee (p ≤ 0.02), while a
 * real second knee that scored 0.41 is read as one (p = 0.79).
 */
export const MATE_MIN_SCORE = 0.3;

/** DICOM ViewPosition terms (and common variants) that are not an AP/PA projection. */
const NOT_AP_VIEWS = new Set([
  "LL",
  "RL",
  "LLD",
  "RLD",
  "LLO",
  "RLO",
  "LAT",
  "LATERAL",
  "ML",
  "LM",
  "OBL",
  "OBLIQUE",
  "AXIAL",
  "SKYLINE",
]);

export interface KneeImageInput extends GreyImage {
  /** Mean of row and column spacing, mm; null when unknown. */
  spacingMm: number | null;
}

export interface KneeHeader extends LateralityHeader {
  viewPosition?: string | undefined;
}

export interface FoundKnee {
  laterality: Side | "U";
  lateralitySource: string;
  lateralityAssumed: boolean;
  /** The crop square in image pixels. */
  box: { cx: number; cy: number; side: number };
  /** The square's side in mm, when the spacing is known. */
  sideMm: number | null;
  /** Knee score (see localise.ts), -1..1. */
  score: number;
  lowConfidence: boolean;
  /**
   * A prosthesis at the joint (see arthroplasty.ts): the knee is reported, never graded
   * ("knee arthroplasty — not graded").
   */
  arthroplasty: boolean;
  crop224: Uint8Array;
  input: Float32Array;
}

/** What the reader is told about a knee with a prosthesis. */
export const ARTHROPLASTY_NOT_GRADED = "knee arthroplasty — not graded";

export type KneeRefusalCode = "NOT_AP_VIEW" | "NO_KNEE_FOUND";

export type KneeFindings =
  | { ok: true; knees: FoundKnee[]; warnings: string[] }
  | { ok: false; code: KneeRefusalCode; reason: string; bestScore: number | null };

export async function findKnees(
  image: KneeImageInput,
  header: KneeHeader,
  inputSize: number,
  options: {
    /** The localiser's thresholds (defaults: localise.ts, and LOW_CONFIDENCE_SCORE here). */
    minScore?: number;
    pairMinScore?: number;
    lowConfidenceScore?: number;
    /** Templates to match (default: the bundled ones). */
    templates?: KneeTemplate[];
    /** Least probability of "AP/PA knee joint" from the verifier (default 0.5). */
    verifierMinProbability?: number;
    /** Least knee score of the square beside a lone knee (its mate) to be verified as a knee. */
    mateMinScore?: number;
  } = {},
): Promise<KneeFindings> {
  const view = header.viewPosition?.trim().toUpperCase();
  if (view && NOT_AP_VIEWS.has(view)) {
    return {
      ok: false,
      code: "NOT_AP_VIEW",
      reason: `ViewPosition ${view}: only AP/PA knee views are graded`,
      bestScore: null,
    };
  }
  const {
    lowConfidenceScore = LOW_CONFIDENCE_SCORE,
    verifierMinProbability = VERIFIER_MIN_PROBABILITY,
    mateMinScore = MATE_MIN_SCORE,
    ...localiser
  } = options;
  // In a worker thread: the caller's event loop (the worker service's) never waits on it.
  const found = await localiseKneesOffThread(
    { width: image.width, height: image.height, data: image.data },
    { spacingMm: image.spacingMm, ...localiser },
  );
  if (found.knees.length === 0) {
    const best = found.best?.score ?? null;
    return {
      ok: false,
      code: "NO_KNEE_FOUND",
      reason:
        best === null
          ? "no knee joint found"
          : `no knee joint found (best knee score ${best.toFixed(2)} < ${found.minScore.toFixed(2)})`,
      bestScore: best,
    };
  }
  // Second stage: each square must look like an AP/PA knee joint (verify.ts). A prosthesis is
  // evidence of a knee joint in itself (and looks like no training crop): not asked.
  const cutOne = async (k: KneeCandidate) => {
    const { plain224, ...crop } = await cutKnee(image, k, inputSize);
    const metal = detectArthroplasty({
      width: TRAINING_CROP_SIZE,
      height: TRAINING_CROP_SIZE,
      data: plain224 ?? crop.crop224,
    });
    return { k, crop, metal };
  };
  const cut = await Promise.all(found.knees.map(cutOne));
  // Where one knee was found, the square where its mate would be (at its height, beside it, at its
  // size) is a knee too when it holds a prosthesis at the joint line (a prosthesis matches the
  // knee templates poorly), or when it scores at least `mateMinScore` and the verifier takes it:
  // the geometry is evidence enough for a score below the pair threshold.
  let mate: Awaited<ReturnType<typeof cutOne>> | null = null;
  if (found.mate) {
    mate = await cutOne(found.mate);
    if (mate.metal.arthroplasty || mate.k.score >= mateMinScore) cut.push(mate);
  }
  cut.sort((a, b) => a.k.cx - b.k.cx);
  const verdicts = await verifyKneeCropsOffThread(cut.map((c) => c.crop.crop224));
  const accepted = cut.filter(
    (c, i) => c.metal.arthroplasty || verdicts[i]!.apKnee >= verifierMinProbability,
  );
  // A mate the verifier did not take was never a knee the localiser reported: no warning for it,
  // and it never words a refusal.
  const reported = cut.filter((c) => c !== mate || accepted.includes(c));
  if (accepted.length === 0) {
    // The best match decides how the refusal is worded.
    const top = cut.reduce(
      (b, c, i) => (c !== mate && (b < 0 || c.k.score > cut[b]!.k.score) ? i : b),
      -1,
    );
    const v = verdicts[top]!;
    const score = cut[top]!.k.score;
    const notAp = v.notApView > v.noKneeJoint;
    return {
      ok: false,
      code: notAp ? "NOT_AP_VIEW" : "NO_KNEE_FOUND",
      reason: notAp
        ? `not an AP/PA knee view (knee score ${score.toFixed(2)}, but the verifier reads a knee seen otherwise: p = ${v.notApView.toFixed(2)})`
        : `no knee joint found (knee score ${score.toFixed(2)}, but the verifier reads no knee joint: p = ${v.noKneeJoint.toFixed(2)})`,
      bestScore: score,
    };
  }
  const warnings: string[] = [];
  if (accepted.length < reported.length) {
    warnings.push(
      "a second knee-like region was not taken for a knee by the verifier: one knee graded",
    );
  }
  const sides = assignLaterality(
    accepted.map((c) => c.k),
    image.width,
    header,
  );
  if (accepted.length === 2 && ["R", "L"].includes(header.imageLaterality?.trim() ?? "")) {
    warnings.push(
      `ImageLaterality says ${header.imageLaterality} but two knees were found: sides taken from their positions`,
    );
  }
  const knees: FoundKnee[] = [];
  for (const [i, { k, crop, metal }] of accepted.entries()) {
    const s = sides[i]!;
    if (metal.metal && !metal.arthroplasty) {
      warnings.push(
        `knee ${s.laterality}: metal implant near the joint (not at the joint line); graded`,
      );
    }
    const lowConfidence = k.score < lowConfidenceScore;
    if (lowConfidence) {
      warnings.push(
        `knee ${s.laterality}: low localisation confidence (score ${k.score.toFixed(2)})`,
      );
    }
    if (s.assumed) warnings.push(`knee ${s.laterality}: laterality assumed (${s.source})`);
    knees.push({
      laterality: s.laterality,
      lateralitySource: s.source,
      lateralityAssumed: s.assumed,
      box: { cx: k.cx, cy: k.cy, side: k.side },
      sideMm: image.spacingMm ? k.side * image.spacingMm : null,
      score: k.score,
      lowConfidence,
      arthroplasty: metal.arthroplasty,
      ...crop,
    });
  }
  return { ok: true, knees, warnings };
}
