/**
 * The pre-filled report: what a radiologist would dictate, from the AI result. Rules (README.md):
 * one findings line per knee (right, then left, then side unknown; a knee with a prosthesis says
 * "knee arthroplasty — not graded" and gets no grade), a line per caveat (low
 * localisation confidence, assumed or unknown side), a line per ungraded image, the pipeline's
 * other warnings, the test-model notice when the model's status is "smoke", and always the
 * "unverified" notice last.
 */
import { KL_GRADE_WORDS } from "./codes.ts";
import type { KneeDecision, KneeFinding, NotGradedKnee, ReportInput } from "./types.ts";

export const UNVERIFIED_NOTICE =
  "AI-generated, unverified: requires review and signature by a radiologist.";
export const TEST_MODEL_NOTICE = "TEST MODEL – NOT FOR CLINICAL USE";

const SIDE_ORDER = { R: 0, L: 1, U: 2 } as const;
const SIDE_LABEL = { R: "Right knee", L: "Left knee", U: "Knee (side not determined)" } as const;
const SIDE_TRACKING = { R: "right knee", L: "left knee", U: "knee (side not determined)" } as const;
const SIDE_NOUN = { R: "the right knee", L: "the left knee", U: "the knee (side not determined)" };

/** Ungraded-image codes worded for a reader when the reason is empty. */
const UNGRADED_WORDS: Record<string, string> = {
  NO_KNEE_FOUND: "no knee joint found",
  NOT_AP_VIEW: "not an AP/PA knee view",
  CORRUPT_PIXEL_DATA: "the image could not be decoded",
  UNSUPPORTED_TRANSFER_SYNTAX: "the image's encoding is not supported",
};

export function isTestModel(input: Pick<ReportInput, "algorithm">): boolean {
  return input.algorithm.modelStatus.trim().toLowerCase() === "smoke";
}

/** Whether the knee's side was assumed rather than read from the image. */
export function lateralityAssumed(knee: KneeFinding | NotGradedKnee): boolean {
  return knee.lateralityAssumed ?? /assum/i.test(knee.lateralitySource);
}

/** "grade 3 (moderate osteoarthritis)" */
export function gradeWords(grade: number): string {
  const word = KL_GRADE_WORDS[grade];
  if (word === undefined) throw new RangeError(`Kellgren-Lawrence grade out of range: ${grade}`);
  return `grade ${grade} (${grade === 0 ? "no osteoarthritis" : `${word} osteoarthritis`})`;
}

/** " (reason)", or nothing when the reason is empty. */
const why = (reason: string) => (reason.trim() ? ` (${reason.trim()})` : "");
const percent = (p: number) => `${Math.round(p * 100)} %`;
const sentence = (s: string) => {
  const t = s.trim().replace(/[.\s]+$/, "");
  return `${t.charAt(0).toUpperCase()}${t.slice(1)}.`;
};
/** Lower-cases a plain capitalised first word ("No knee …" → "no knee …"), not "ViewPosition". */
const lowerFirst = (s: string) =>
  /^[A-Z][a-z]*\b(?![-_])/.test(s) ? s.charAt(0).toLowerCase() + s.slice(1) : s;

/**
 * The knees in reading order (right, left, unknown; stable) with their labels ("Right knee") and
 * tracking identifiers ("right knee"); ", finding n" is added when a side occurs more than once.
 */
export function orderedKnees<K extends { laterality: "R" | "L" | "U" }>(
  knees: readonly K[],
): { knee: K; label: string; tracking: string }[] {
  const sorted = knees
    .map((knee, i) => ({ knee, i }))
    .sort((a, b) => SIDE_ORDER[a.knee.laterality] - SIDE_ORDER[b.knee.laterality] || a.i - b.i)
    .map((e) => e.knee);
  const total = { R: 0, L: 0, U: 0 };
  for (const k of sorted) total[k.laterality]++;
  const seen = { R: 0, L: 0, U: 0 };
  return sorted.map((knee) => {
    const n = ++seen[knee.laterality];
    const suffix = total[knee.laterality] > 1 ? `, finding ${n}` : "";
    return {
      knee,
      label: `${SIDE_LABEL[knee.laterality]}${suffix}`,
      tracking: `${SIDE_TRACKING[knee.laterality]}${suffix}`,
    };
  });
}

/** Pipeline warnings already worded from the knees' own fields are not repeated. */
const COVERED_WARNING = /low localisation confidence|laterality assumed/i;

export interface ReportLines {
  findings: string[];
  impression: string[];
}

export function reportLines(input: ReportInput): ReportLines {
  const findings: string[] = [];
  const knees = orderedKnees(input.knees);
  for (const { knee, label } of knees) {
    const p = knee.probabilities[knee.grade];
    findings.push(
      `${label}: Kellgren–Lawrence ${gradeWords(knee.grade)}${p === undefined ? "" : `, probability ${percent(p)}`}.`,
    );
    if (knee.lowConfidence) {
      findings.push(
        `${label}: the knee joint was located with low confidence (localisation score ${knee.localisationScore.toFixed(2)}); check the graded region before relying on this grade.`,
      );
    }
    if (knee.laterality === "U") {
      findings.push(
        `${label}: the side could not be determined from the image${why(knee.lateralitySource)}; check the side marker.`,
      );
    } else if (lateralityAssumed(knee)) {
      findings.push(`${label}: side assumed${why(knee.lateralitySource)}; check the side marker.`);
    }
  }
  const notGraded = orderedKnees(input.notGraded ?? []);
  for (const { knee, label } of notGraded) {
    findings.push(`${label}: ${knee.reason.trim() || "not graded"}.`);
    if (knee.laterality === "U") {
      findings.push(
        `${label}: the side could not be determined from the image${why(knee.lateralitySource)}; check the side marker.`,
      );
    } else if (lateralityAssumed(knee)) {
      findings.push(`${label}: side assumed${why(knee.lateralitySource)}; check the side marker.`);
    }
  }
  const ungraded = input.ungraded;
  for (const [i, image] of ungraded.entries()) {
    const why = lowerFirst(
      (image.reason.trim() || UNGRADED_WORDS[image.code] || image.code).replace(/[.\s]+$/, ""),
    );
    const subject =
      ungraded.length === 1
        ? "One image could not be graded"
        : `Image ${i + 1} of the ${ungraded.length} images not graded`;
    findings.push(`${subject}: ${why}.`);
  }
  if (input.knees.length === 0 && notGraded.length === 0 && ungraded.length === 0) {
    findings.push("No knee was graded.");
  }
  for (const warning of input.warnings) {
    if (!COVERED_WARNING.test(warning) && warning.trim() !== "") {
      findings.push(`Note: ${sentence(warning)}`);
    }
  }
  const testModel = isTestModel(input);
  const testLine = `${TEST_MODEL_NOTICE}: these results come from a test model (status "smoke") and must not be used for patient care.`;
  if (testModel) findings.push(testLine);
  findings.push(UNVERIFIED_NOTICE);

  const impression: string[] = [];
  if (knees.length > 0) {
    impression.push(impressionSentence(knees.map((k) => k.knee)));
  } else if (notGraded.length === 0) {
    impression.push("No knee could be graded by the AI (see findings).");
  }
  for (const { knee, label } of notGraded) {
    impression.push(`${label}: ${knee.reason.trim() || "not graded"}.`);
  }
  if (knees.length > 0 && ungraded.length > 0) {
    impression.push(
      ungraded.length === 1
        ? "One image could not be graded (see findings)."
        : `${ungraded.length} images could not be graded (see findings).`,
    );
  }
  if (
    knees.some(
      (k) => k.knee.lowConfidence || k.knee.laterality === "U" || lateralityAssumed(k.knee),
    ) ||
    notGraded.some((k) => k.knee.laterality === "U" || lateralityAssumed(k.knee))
  ) {
    impression.push("Check the caveats in the findings.");
  }
  if (testModel) impression.push(`${TEST_MODEL_NOTICE}.`);
  impression.push(UNVERIFIED_NOTICE);
  return { findings, impression };
}

const IMPRESSION_WORDS = [
  "no radiographic osteoarthritis",
  "doubtful osteoarthritis",
  "minimal osteoarthritis",
  "moderate osteoarthritis",
  "severe osteoarthritis",
];

/** "Moderate osteoarthritis of the right knee (Kellgren–Lawrence grade 3); ..." */
function impressionSentence(knees: KneeFinding[]): string {
  const one = knees.length === 1 ? knees[0] : undefined;
  const [a, b] = knees;
  const parts: string[] = [];
  if (
    knees.length === 2 &&
    a &&
    b &&
    a.laterality === "R" &&
    b.laterality === "L" &&
    a.grade === b.grade
  ) {
    parts.push(
      a.grade === 0
        ? "no radiographic osteoarthritis in either knee (Kellgren–Lawrence grade 0)"
        : `${IMPRESSION_WORDS[a.grade]} of both knees (Kellgren–Lawrence grade ${a.grade})`,
    );
  } else {
    for (const k of one ? [one] : knees) {
      parts.push(
        `${IMPRESSION_WORDS[k.grade]} of ${SIDE_NOUN[k.laterality]} (Kellgren–Lawrence grade ${k.grade})`,
      );
    }
  }
  return sentence(parts.join("; "));
}

/** The pre-filled report: findings and impression, one statement per line ("\n"). */
export function reportText(input: ReportInput): { findings: string; impression: string } {
  const lines = reportLines(input);
  return { findings: lines.findings.join("\n"), impression: lines.impression.join("\n") };
}

/**
 * The report a radiologist signs when they keep the pre-filled text: their decision per knee
 * (grade, or not gradable and why), then the AI's grades, labelled as the AI's, for reference.
 * `decisions` follow `input.knees`' order. No "unverified" notice: the signature verifies it.
 */
export function signedReportLines(input: ReportInput, decisions: KneeDecision[]): ReportLines {
  const findings: string[] = [];
  const decided = input.knees.map((knee, i) => ({ knee, decision: decisions[i] }));
  const byKnee = new Map(decided.map((d) => [d.knee, d.decision]));
  const knees = orderedKnees(input.knees);
  const gradable: KneeFinding[] = [];
  for (const { knee, label } of knees) {
    const d = byKnee.get(knee);
    if (!d) throw new RangeError(`no decision for the ${label.toLowerCase()}`);
    if (d.grade === null) {
      findings.push(`${label}: not gradable${why(d.notGradableReason)}.`);
    } else {
      findings.push(`${label}: Kellgren–Lawrence ${gradeWords(d.grade)}.`);
      gradable.push({ ...knee, grade: d.grade });
    }
  }
  if (knees.length > 0) {
    const ai = knees.map(({ knee, tracking }) => `${tracking} grade ${knee.grade}`).join(", ");
    findings.push(
      `AI result (${input.algorithm.name}, model ${input.algorithm.version}), for reference: ${ai}.`,
    );
  }
  if (isTestModel(input))
    findings.push(`${TEST_MODEL_NOTICE}: the AI result came from a test model.`);
  const impression = [
    gradable.length > 0 ? impressionSentence(gradable) : "No knee could be graded (see findings).",
  ];
  return { findings, impression };
}
