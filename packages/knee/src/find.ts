/**
 * From a decoded radiograph to the model inputs of its knees, or a recorded reason why not.
 */
import { type ArthroplastyFinding, detectArthroplasty } from "./arthroplasty.ts";
import { cutKnee, type KneeCrop, TRAINING_CROP_SIZE } from "./crop.ts";
import { assignLaterality, type LateralityHeader, type Side } from "./laterality.ts";
import type { GreyImage, KneeCandidate, KneeTemplate, LocaliseResult } from "./localise.ts";
import { localiseKneesOffThread, verifyKneeCropsOffThread } from "./localise-thread.ts";
import { type KneeVerdict, VERIFIER_MIN_PROBABILITY } from "./verify.ts";

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

export interface FindKneesOptions {
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
}

type Refusal = Extract<KneeFindings, { ok: false }>;

/** A localised square cut out as a crop, with what the arthroplasty check saw in it. */
interface CutSquare {
  k: KneeCandidate;
  crop: KneeCrop;
  metal: ArthroplastyFinding;
}

/**
 * The knees of one radiograph: the view checked, knee squares localised (off the event loop),
 * each cut and checked for a prosthesis, verified as AP/PA knee joints, then given a side.
 */
export async function findKnees(
  image: KneeImageInput,
  header: KneeHeader,
  inputSize: number,
  options: FindKneesOptions = {},
): Promise<KneeFindings> {
  const wrongView = notApViewRefusal(header);
  if (wrongView) return wrongView;
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
  if (found.knees.length === 0) return noKneeRefusal(found);
  const { cut, mate } = await cutSquares(image, found, inputSize, mateMinScore);
  // Second stage: each square must look like an AP/PA knee joint (verify.ts). A prosthesis is
  // evidence of a knee joint in itself (and looks like no training crop): not asked.
  const verdicts = await verifyKneeCropsOffThread(cut.map((c) => c.crop.crop224));
  const accepted = cut.filter(
    (c, i) => c.metal.arthroplasty || verdicts[i]!.apKnee >= verifierMinProbability,
  );
  if (accepted.length === 0) return verifierRefusal(cut, mate, verdicts);
  // A mate the verifier did not take was never a knee the localiser reported: no warning for it.
  const reported = cut.filter((c) => c !== mate || accepted.includes(c));
  const warnings: string[] = [];
  if (accepted.length < reported.length) {
    warnings.push(
      "a second knee-like region was not taken for a knee by the verifier: one knee graded",
    );
  }
  const knees = describeKnees(image, header, accepted, lowConfidenceScore, warnings);
  return { ok: true, knees, warnings };
}

function notApViewRefusal(header: KneeHeader): Refusal | null {
  const view = header.viewPosition?.trim().toUpperCase();
  if (!view || !NOT_AP_VIEWS.has(view)) return null;
  return {
    ok: false,
    code: "NOT_AP_VIEW",
    reason: `ViewPosition ${view}: only AP/PA knee views are graded`,
    bestScore: null,
  };
}

function noKneeRefusal(found: LocaliseResult): Refusal {
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

/**
 * The found knees' squares cut out, left to right. Where one knee was found, the square where its
 * mate would be (at its height, beside it, at its size) is a knee too when it holds a prosthesis
 * at the joint line (a prosthesis matches the knee templates poorly), or when it scores at least
 * `mateMinScore` and the verifier takes it: the geometry is evidence enough for a score below the
 * pair threshold.
 */
async function cutSquares(
  image: KneeImageInput,
  found: LocaliseResult,
  inputSize: number,
  mateMinScore: number,
): Promise<{ cut: CutSquare[]; mate: CutSquare | null }> {
  const cutOne = async (k: KneeCandidate): Promise<CutSquare> => {
    const { plain224, ...crop } = await cutKnee(image, k, inputSize);
    const metal = detectArthroplasty({
      width: TRAINING_CROP_SIZE,
      height: TRAINING_CROP_SIZE,
      data: plain224 ?? crop.crop224,
    });
    return { k, crop, metal };
  };
  const cut = await Promise.all(found.knees.map(cutOne));
  let mate: CutSquare | null = null;
  if (found.mate) {
    mate = await cutOne(found.mate);
    if (mate.metal.arthroplasty || mate.k.score >= mateMinScore) cut.push(mate);
  }
  cut.sort((a, b) => a.k.cx - b.k.cx);
  return { cut, mate };
}

/**
 * Why no square was taken for a knee, worded after the best match the localiser reported (a mate
 * never words a refusal).
 */
function verifierRefusal(
  cut: readonly CutSquare[],
  mate: CutSquare | null,
  verdicts: readonly KneeVerdict[],
): Refusal {
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

/** The accepted knees with their sides and flags; what the reader should know goes to `warnings`. */
function describeKnees(
  image: KneeImageInput,
  header: KneeHeader,
  accepted: readonly CutSquare[],
  lowConfidenceScore: number,
  warnings: string[],
): FoundKnee[] {
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
  return accepted.map(({ k, crop, metal }, i) => {
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
    return {
      laterality: s.laterality,
      lateralitySource: s.source,
      lateralityAssumed: s.assumed,
      box: { cx: k.cx, cy: k.cy, side: k.side },
      sideMm: image.spacingMm ? k.side * image.spacingMm : null,
      score: k.score,
      lowConfidence,
      arthroplasty: metal.arthroplasty,
      ...crop,
    };
  });
}
