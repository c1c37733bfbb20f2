/**
 * Agreement monitoring: for every knee of the latest signature of each graded revision in a window,
 * the AI's grade against the radiologist's (knees marked not gradable are counted apart). The same
 * figures as `kneegrade evaluate` (@kneegrade/metrics), the radiologist's grade taken as the truth.
 */
import type { Config } from "@kneegrade/config";
import type { Db } from "@kneegrade/db";
import { confusionSvg, evaluationMetrics } from "@kneegrade/metrics";
import sharp from "sharp";
import { html, type PageUser, page } from "./html.ts";

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
  const exact = n ? m.overall_accuracy : null;
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
    confusion: m.confusion_matrix,
    alertBelow: config.REVIEW_AGREEMENT_ALERT,
    minKnees: config.REVIEW_AGREEMENT_MIN_KNEES,
    warning,
  };
}

/** The confusion matrix as a picture (rows: radiologist, columns: AI). */
export async function confusionPng(r: AgreementReport): Promise<Buffer> {
  const svg = confusionSvg(
    {
      n: r.knees,
      overall_accuracy: r.exact ?? 0,
      qwk: r.qwk ?? 0,
      confusion_matrix: r.confusion,
    },
    `AI vs radiologist, last ${r.windowDays} days`,
  ).replace("true (rows) / predicted (cols)", "radiologist (rows) / AI (cols)");
  return sharp(Buffer.from(svg)).png().toBuffer();
}

const share = (v: number | null) => (v === null ? "—" : `${(v * 100).toFixed(1)} %`);

export function agreementPage(r: AgreementReport, user: PageUser, csrf: string): string {
  const body = html`
<h1>Agreement: AI vs radiologists</h1>
<form method="get" action="/agreement" class="window">
  <label>Window <input type="number" name="days" min="1" max="3650" value="${r.windowDays}"> days</label>
  <button type="submit">Show</button>
</form>
${r.warning ? html`<p class="banner warning" id="agreement-warning">⚠ ${r.warning}</p>` : ""}
<table class="figures" id="agreement-figures">
  <tr><th>signed knees</th><td id="knees">${r.knees}</td></tr>
  <tr><th>marked not gradable</th><td>${r.notGradable}</td></tr>
  <tr><th>exact agreement</th><td id="exact">${share(r.exact)}</td></tr>
  <tr><th>within one grade</th><td id="within-one">${share(r.withinOne)}</td></tr>
  <tr><th>quadratic weighted kappa</th><td id="qwk">${r.qwk === null ? "—" : r.qwk.toFixed(3)}</td></tr>
  <tr><th>alert below (exact, from ${r.minKnees} knees)</th><td>${share(r.alertBelow)}</td></tr>
</table>
<h2>Per radiologist grade</h2>
<table class="per-grade"><tr>${r.perGrade.map((_, g) => html`<th>KL${g}</th>`)}</tr>
<tr>${r.perGrade.map((v, g) => html`<td>${share(v)} <small>(n ${r.confusion[g]!.reduce((a, b) => a + b, 0)})</small></td>`)}</tr></table>
<h2>Confusion matrix</h2>
<img src="/agreement/confusion.png?days=${r.windowDays}" alt="confusion matrix, radiologist rows, AI columns">
<p class="hint">Since ${r.since}; the latest signature of each study revision counts (amendments replace earlier signatures).</p>`;
  return page("Agreement", body, { user, csrf });
}
