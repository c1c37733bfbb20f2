/**
 * Every knee accounted for: the knees a radiograph shows that the AI gave no grade — a region its
 * verifier did not take for a knee, the other knee of a bilateral view it did not find, a knee
 * with an arthroplasty — each become a card the radiologist must decide (a grade, not gradable,
 * or not present) before signing, and a line of the signed report.
 */
import { KL_GRADE_WORDS } from "@kneegrade/dicom-writers";

export type Side = "RIGHT" | "LEFT" | "UNKNOWN";

export interface MissingKnee {
  /** Stable within a graded revision: `<instance id>_<R|L|U>`; names the form's fields. */
  key: string;
  instanceId: string;
  laterality: Side;
  code: "NOT_VERIFIED" | "NOT_FOUND" | "ARTHROPLASTY";
  /** Why the AI gave no grade, for a reader. */
  reason: string;
}

export type MissingDecision =
  | { decision: "GRADED"; grade: number }
  | { decision: "NOT_GRADABLE"; reason: string }
  | { decision: "NOT_PRESENT" };

/** The verifier's warning (packages/knee find.ts) when it refused one of two knee-like regions. */
const VERIFIER_REFUSED = /not taken for a knee/i;
const LETTER = { RIGHT: "R", LEFT: "L", UNKNOWN: "U" } as const;
const OTHER: Record<Side, Side> = { RIGHT: "LEFT", LEFT: "RIGHT", UNKNOWN: "UNKNOWN" };
export const SIDE_LABEL: Record<Side, string> = {
  RIGHT: "Right knee",
  LEFT: "Left knee",
  UNKNOWN: "Knee (side unknown)",
};

interface GradingRow {
  instanceId: string;
  outcome: string;
  warnings: unknown;
  notGraded: unknown;
  instance: { imageLaterality: string | null };
}

/** The knees the AI did not grade, in reading order (right, left, unknown). */
export function missingKnees(job: {
  instances: GradingRow[];
  results: { instanceId: string; laterality: Side }[];
}): MissingKnee[] {
  const out: MissingKnee[] = [];
  for (const g of job.instances) {
    if (g.outcome !== "GRADED") continue;
    const notGraded = ((g.notGraded as { laterality?: Side; reason?: string }[] | null) ?? []).map(
      (k) => ({ laterality: k.laterality ?? "UNKNOWN", reason: k.reason ?? "not graded" }),
    );
    const graded = job.results.filter((r) => r.instanceId === g.instanceId);
    const found = [...graded.map((r) => r.laterality), ...notGraded.map((k) => k.laterality)];
    for (const k of notGraded) {
      out.push({
        key: `${g.instanceId}_${LETTER[k.laterality]}`,
        instanceId: g.instanceId,
        laterality: k.laterality,
        code: "ARTHROPLASTY",
        reason: k.reason,
      });
    }
    if (found.length !== 1) continue;
    const warnings = Array.isArray(g.warnings) ? (g.warnings as string[]) : [];
    const refused = warnings.some((w) => VERIFIER_REFUSED.test(w));
    const bilateral = g.instance.imageLaterality?.trim().toUpperCase() === "B";
    if (!refused && !bilateral) continue;
    const side = OTHER[found[0]!];
    if (out.some((m) => m.instanceId === g.instanceId && m.laterality === side)) continue;
    out.push({
      key: `${g.instanceId}_${LETTER[side]}`,
      instanceId: g.instanceId,
      laterality: side,
      code: refused ? "NOT_VERIFIED" : "NOT_FOUND",
      reason: refused
        ? "a second knee-like region was not taken for a knee by the AI's verifier"
        : "the view shows both knees (ImageLaterality B) but the AI found only one",
    });
  }
  const order = { RIGHT: 0, LEFT: 1, UNKNOWN: 2 };
  return out.sort((a, b) => order[a.laterality] - order[b.laterality]);
}

/** A missing knee's decision from the sign form (`missing_<key>`, `missing_reason_<key>`). */
export function missingDecisionOf(
  form: Record<string, string | undefined>,
  key: string,
): MissingDecision | "invalid" | undefined {
  const value = form[`missing_${key}`];
  if (value === undefined || value === "") return undefined;
  if (value === "np") return { decision: "NOT_PRESENT" };
  if (value === "ng") {
    return {
      decision: "NOT_GRADABLE",
      reason: (form[`missing_reason_${key}`] ?? "").trim().slice(0, 200),
    };
  }
  if (/^[0-4]$/.test(value)) return { decision: "GRADED", grade: Number(value) };
  return "invalid";
}

const gradeWords = (g: number) =>
  `grade ${g} (${g === 0 ? "no osteoarthritis" : `${KL_GRADE_WORDS[g]} osteoarthritis`})`;

/** "Right knee — not graded by the AI (why)" */
export const missingLabel = (m: MissingKnee) =>
  `${SIDE_LABEL[m.laterality]} — not graded by the AI (${m.reason})`;

/** The findings line that records a missing knee and the radiologist's decision for it. */
export function missingFindingLine(m: MissingKnee, d: MissingDecision | undefined): string {
  const decided = !d
    ? "radiologist's decision required"
    : d.decision === "GRADED"
      ? `radiologist: Kellgren–Lawrence ${gradeWords(d.grade)}`
      : d.decision === "NOT_GRADABLE"
        ? `radiologist: not gradable${d.reason ? ` (${d.reason})` : ""}`
        : "radiologist: not present on the image";
  return `${missingLabel(m)}; ${decided}.`;
}

/** The impression line of a missing knee the radiologist graded or could not grade. */
export function missingImpressionLine(m: MissingKnee, d: MissingDecision | undefined) {
  if (d?.decision === "GRADED") {
    return `${SIDE_LABEL[m.laterality]} (not graded by the AI): Kellgren–Lawrence ${gradeWords(d.grade)}.`;
  }
  if (d?.decision === "NOT_GRADABLE") {
    return `${SIDE_LABEL[m.laterality]}: not gradable${d.reason ? ` (${d.reason})` : ""}.`;
  }
  return null;
}
