/**
 * Agreement monitoring: for every knee of the latest signature of each graded revision in a window,
 * the AI's grade against the radiologist's (knees marked not gradable are counted apart). The same
 * figures as `kneegrade evaluate` (@kneegrade/grading-metrics), the radiologist's grade taken as the truth.
 */
import type { Config } from "@kneegrade/config";
import type { Db } from "@kneegrade/db";
import { evaluationMetrics } from "@kneegrade/grading-metrics";

export interface AgreementReport {
  windowDays: number;
  since: string;
  /** Signed knees with a radiologist's grade. */
  knees: number;
  notGradable: number;
  exact: number | null;
  withinOne: number | null;
  qwk: number | null;
  /** Per radiologist grade 0..4: the share the AI graded the same (null: no such knee). */
  perGrade: (number | null)[];
  /** Rows: radiologist's grade; columns: the AI's. */
  confusion: number[][];
  alertBelow: number;
  minKnees: number;
  warning: string | null;
}

export async function agreementReport(
  db: Db,
  config: Pick<
    Config,
    "REVIEW_AGREEMENT_ALERT" | "REVIEW_AGREEMENT_DAYS" | "REVIEW_AGREEMENT_MIN_KNEES"
  >,
  days = config.REVIEW_AGREEMENT_DAYS,
  now = new Date(),
): Promise<AgreementReport> {
  const since = new Date(now.getTime() - days * 86_400_000);
  const rows = await db.$queryRaw<{ ai: number; radiologist: number | null }[]>`
    SELECT rk."aiGrade" AS ai, rk."radiologistGrade" AS radiologist
    FROM "ReviewKnee" rk JOIN "Review" r ON r.id = rk."reviewId"
    WHERE r."signedAt" >= ${since}
      AND r.sequence = (SELECT max(r2.sequence) FROM "Review" r2
                        WHERE r2."gradingJobId" = r."gradingJobId")`;
  const graded = rows.filter(
    (r): r is { ai: number; radiologist: number } => r.radiologist !== null,
  );
  const m = evaluationMetrics(
    graded.map((r) => r.radiologist),
    graded.map((r) => r.ai),
  );
  const n = graded.length;
  const withinOne = n ? graded.filter((r) => Math.abs(r.ai - r.radiologist) <= 1).length / n : null;
  const exact = n ? m.accuracy : null;
  const warning =
    exact !== null &&
    n >= config.REVIEW_AGREEMENT_MIN_KNEES &&
    exact < config.REVIEW_AGREEMENT_ALERT
      ? `exact agreement ${(exact * 100).toFixed(1)} % over ${n} knees in ${days} days is below REVIEW_AGREEMENT_ALERT (${(config.REVIEW_AGREEMENT_ALERT * 100).toFixed(0)} %): the model may have drifted, or images of a new kind arrive`
      : null;
  return {
    windowDays: days,
    since: since.toISOString(),
    knees: n,
    notGradable: rows.length - n,
    exact,
    withinOne,
    qwk: n ? m.qwk : null,
    perGrade: m.per_grade_accuracy,
    confusion: m.confusion,
    alertBelow: config.REVIEW_AGREEMENT_ALERT,
    minKnees: config.REVIEW_AGREEMENT_MIN_KNEES,
    warning,
  };
}
