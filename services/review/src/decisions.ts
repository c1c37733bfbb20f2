/**
 * The radiologist's decisions on a study's knees — the AI's, a signature's, or the form's so far —
 * and the report text they generate, as the study page shows it and the signature checks it.
 */
import {
  algorithmOf,
  type KneeDecision,
  kneeFinding,
  type ReportInput,
  reportUids,
  signedReportLines,
} from "@kneegrade/dicom-writers";
import { z } from "zod";
import {
  type MissingDecision,
  type MissingKnee,
  missingDecisionOf,
  missingFindingLine,
  missingImpressionLine,
} from "./missing.ts";
import type { LoadedStudy } from "./study-data.ts";

/** The sign form as the study page submits it: named text fields, each once, of bounded size. */
export const SignForm = z
  .record(z.string().max(100), z.string().max(20_000))
  .refine((f) => Object.keys(f).length <= 200, "too many fields");

export type GradedJob = NonNullable<LoadedStudy["job"]>;
type Latest = GradedJob["reviews"][number];

/** The parts of a report input the report text needs (no header: no spool read). */
export function textInput(job: GradedJob): ReportInput {
  const knees = job.results.map((r) =>
    kneeFinding(r, {
      sopClassUid: r.instance.sopClassUid,
      sopInstanceUid: r.instance.sopInstanceUid,
      seriesInstanceUid: "",
    }),
  );
  const uids = reportUids(job.id);
  return {
    context: { studyInstanceUid: "" },
    knees,
    ungraded: [],
    warnings: [],
    algorithm: algorithmOf(job),
    seriesInstanceUid: uids.aiSrSeries,
    sopInstanceUid: uids.aiSr,
    seriesNumber: 0,
    instanceNumber: 0,
    contentDateTime: new Date(0),
    deviceObserverUid: "",
  };
}

/** The radiologist's decisions: one per graded knee (results' order), one per missing knee. */
export interface Decisions {
  knees: KneeDecision[];
  missing: Map<string, MissingDecision>;
}

/** The AI's grades, and no decision yet for the knees it did not grade. */
export const aiDecisions = (job: GradedJob): Decisions => ({
  knees: job.results.map((r) => ({ grade: r.klGrade })),
  missing: new Map(),
});

/** The decisions a signature recorded. */
export function decisionsOf(job: GradedJob, review: Latest): Decisions {
  return {
    knees: job.results.map((r) => {
      const k = review.knees.find((x) => x.kneeResultId === r.id);
      if (!k) return { grade: r.klGrade };
      return k.radiologistGrade === null
        ? { grade: null, notGradableReason: k.notGradableReason ?? "" }
        : { grade: k.radiologistGrade };
    }),
    missing: new Map(
      review.missingKnees.map((m) => [
        `${m.instanceId}_${m.laterality.charAt(0)}`,
        m.decision === "GRADED"
          ? { decision: "GRADED", grade: m.radiologistGrade ?? 0 }
          : m.decision === "NOT_GRADABLE"
            ? { decision: "NOT_GRADABLE", reason: m.notGradableReason ?? "" }
            : { decision: "NOT_PRESENT" },
      ]),
    ),
  };
}

/**
 * The report text for these decisions: what the page shows as the grades change and what is
 * signed when the radiologist does not write their own. A knee the AI did not grade gets a
 * findings line with the radiologist's decision (and an impression line when graded).
 */
export function reportTextFor(
  job: GradedJob,
  missing: MissingKnee[],
  decisions: Decisions = aiDecisions(job),
) {
  const input = textInput(job);
  const lines = signedReportLines(input, decisions.knees);
  const findings = [...lines.findings];
  findings.splice(
    input.knees.length,
    0,
    ...missing.map((m) => missingFindingLine(m, decisions.missing.get(m.key))),
  );
  const extra = missing
    .map((m) => missingImpressionLine(m, decisions.missing.get(m.key)))
    .filter((l): l is string => l !== null);
  const noneGraded = decisions.knees.every((d) => d.grade === null);
  const impression = noneGraded && extra.length > 0 ? extra : [...lines.impression, ...extra];
  return { findings: findings.join("\n"), impression: impression.join("\n") };
}

/**
 * The text for the grades on the page so far (the page shows it live): a knee without a valid
 * choice keeps the AI's grade, a missing knee without one says its decision is required.
 */
export function previewText(s: LoadedStudy, form: Record<string, string | undefined>) {
  const job = s.job!;
  const knees: KneeDecision[] = job.results.map((r) => {
    const value = form[`knee_${r.id}`];
    if (value === "ng") {
      return {
        grade: null,
        notGradableReason: (form[`reason_${r.id}`] ?? "").trim().slice(0, 200),
      };
    }
    return { grade: value !== undefined && /^[0-4]$/.test(value) ? Number(value) : r.klGrade };
  });
  const missing = new Map<string, MissingDecision>();
  for (const m of s.missing ?? []) {
    const d = missingDecisionOf(form, m.key);
    if (d && d !== "invalid") missing.set(m.key, d);
  }
  return reportTextFor(job, s.missing ?? [], { knees, missing });
}
