/**
 * One study on screen: its graded revision, each knee's AI result and caveats, the signatures so
 * far, and the signing form (keyboard: 0–4 per knee, Enter to sign; see public/review.js).
 */
import type { Db } from "@kneegrade/db";
import {
  algorithmOf,
  byReadingOrder,
  KL_GRADE_WORDS,
  type KneeDecision,
  kneeFinding,
  lateralityAssumed,
  type ReportInput,
  reportUids,
  signedReportLines,
} from "@kneegrade/reports";
import { dicomDate, html, type PageUser, page, personName } from "./html.ts";

/** The study's current graded revision with everything the page and the signature need. */
export async function loadStudy(db: Db, studyInstanceUid: string) {
  const study = await db.study.findUnique({ where: { studyInstanceUid } });
  if (!study) return null;
  const job = await db.gradingJob.findFirst({
    where: { studyId: study.id, revision: study.revision, status: "COMPLETED" },
    include: {
      results: { include: { instance: true }, orderBy: { createdAt: "asc" } },
      instances: true,
      reviews: { include: { knees: true, user: true }, orderBy: { sequence: "desc" } },
      reports: { include: { deliveries: true } },
    },
  });
  if (!job || job.results.length === 0) return { study, job: null } as const;
  const results = byReadingOrder(job.results);
  return { study, job: { ...job, results } } as const;
}
export type LoadedStudy = NonNullable<Awaited<ReturnType<typeof loadStudy>>>;
type GradedJob = NonNullable<LoadedStudy["job"]>;

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

/** The pre-filled report: what is signed when the radiologist keeps the AI's grades. */
export function prefilledText(job: GradedJob, decisions?: KneeDecision[]) {
  const input = textInput(job);
  const lines = signedReportLines(input, decisions ?? input.knees.map((k) => ({ grade: k.grade })));
  return { findings: lines.findings.join("\n"), impression: lines.impression.join("\n") };
}

const SIDE_LABEL = { RIGHT: "Right knee", LEFT: "Left knee", UNKNOWN: "Knee (side unknown)" };
const pct = (p: number) => `${(p * 100).toFixed(1)} %`;

function caveats(r: GradedJob["results"][number], input: ReportInput, i: number): string[] {
  const out: string[] = [];
  if (r.lowConfidence) {
    out.push(
      `Knee located with low confidence (score ${(r.localisationScore ?? 0).toFixed(2)}): check the region.`,
    );
  }
  const knee = input.knees[i]!;
  if (knee.laterality === "U") out.push("Side could not be determined: check the side marker.");
  else if (lateralityAssumed(knee)) out.push(`Side assumed (${r.lateralitySource}).`);
  return out;
}

export function studyPage(
  s: LoadedStudy,
  user: PageUser & { role: string },
  csrf: string,
  notice?: string,
): string {
  const { study, job } = s;
  const title = `${personName(study.patientName)} · ${dicomDate(study.studyDate)}`;
  if (!job) {
    return page(
      title,
      html`<h1>${title}</h1><p>This study has no graded revision (status ${study.status}).</p>`,
      { user, csrf },
    );
  }
  const input = textInput(job);
  const latest = job.reviews[0];
  const predecessor = latest?.sopInstanceUid ?? reportUids(job.id).aiSr;
  const text = latest
    ? { findings: latest.findings, impression: latest.impression }
    : prefilledText(job);
  const decisionOf = (resultId: string) => latest?.knees.find((k) => k.kneeResultId === resultId);
  const testModel = job.modelStatus === "smoke";
  const canSign = user.role === "RADIOLOGIST";
  const images = [...new Map(job.results.map((r) => [r.instance.id, r.instance])).values()];
  const signedReports = new Map(
    job.reports.filter((r) => r.verified).map((r) => [r.sopInstanceUid, r]),
  );

  const kneeCards = job.results.map((r, i) => {
    const probabilities = r.probabilities as number[];
    const d = decisionOf(r.id);
    const chosen = d ? (d.radiologistGrade ?? "ng") : r.klGrade;
    return html`<section class="knee" data-knee="${i}" id="knee-${i}">
  <h2>${SIDE_LABEL[r.laterality]} <span class="ai-grade">AI: KL ${r.klGrade} (${KL_GRADE_WORDS[r.klGrade]})</span></h2>
  <div class="tiles">
    <figure><img src="/knees/${r.id}/crop.png" alt="crop the model graded" width="224" height="224"><figcaption>graded crop</figcaption></figure>
    ${r.heatmapPng ? html`<figure><img src="/knees/${r.id}/heatmap.png" alt="heat map" width="224" height="224"><figcaption>where the model looked (KL ${r.klGrade})</figcaption></figure>` : ""}
  </div>
  <table class="probabilities"><tr>${probabilities.map((_, g) => html`<th>KL${g}</th>`)}</tr>
  <tr>${probabilities.map((p, g) => html`<td class="${g === r.klGrade ? "ai" : ""}"><meter min="0" max="1" value="${p.toFixed(3)}"></meter>${pct(p)}</td>`)}</tr></table>
  ${caveats(r, input, i).map((c) => html`<p class="caveat">⚠ ${c}</p>`)}
  <fieldset class="decision" ${canSign ? "" : "disabled"}>
    <legend>Radiologist's grade (keys 0–4, N: not gradable)</legend>
    ${[0, 1, 2, 3, 4].map(
      (g) =>
        html`<label class="choice"><input type="radio" name="knee_${r.id}" value="${g}" ${chosen === g ? "checked" : ""}> ${g}</label>`,
    )}
    <label class="choice"><input type="radio" name="knee_${r.id}" value="ng" ${chosen === "ng" ? "checked" : ""}> not gradable</label>
    <input type="text" name="reason_${r.id}" class="reason" placeholder="why not gradable" maxlength="200" value="${d?.notGradableReason ?? ""}">
  </fieldset>
</section>`;
  });

  const history = job.reviews.map(
    (rv) =>
      html`<li>${rv.sequence === 1 ? "Signed" : `Amendment ${rv.sequence - 1}`} by ${personName(rv.user.displayName)} (${rv.user.organisation}) at ${rv.signedAt.toISOString()} — SR ${rv.sopInstanceUid}: ${deliveryState(signedReports.get(rv.sopInstanceUid))}</li>`,
  );

  const body = html`
<h1>${title}</h1>
<p class="meta">Patient ID ${study.patientId ?? "—"} · accession ${study.accessionNumber ?? "—"} · revision ${study.revision} · model ${job.modelVersion ?? "?"} (${job.modelStatus ?? "?"})</p>
${testModel ? html`<p class="banner test">TEST MODEL – NOT FOR CLINICAL USE: these grades come from a test model.</p>` : ""}
${latest ? html`<p class="banner signed" id="signed-banner">Signed by ${personName(latest.user.displayName)} — signing again makes an amendment (a new signed revision).</p>` : html`<p class="banner unverified">AI result, unverified: requires your review and signature.</p>`}
${notice ? html`<p class="notice" role="status">${notice}</p>` : ""}
<div class="study">
  <div class="radiographs">
    ${images.map((im) => html`<img class="radiograph" src="/studies/${study.studyInstanceUid}/instances/${im.sopInstanceUid}.jpg" alt="radiograph with the graded knee regions">`)}
  </div>
  <form method="post" action="/studies/${study.studyInstanceUid}/sign" id="sign-form">
    <input type="hidden" name="_csrf" value="${csrf}">
    <input type="hidden" name="predecessor" value="${predecessor}">
    ${kneeCards}
    <label for="findings">Findings</label>
    <textarea id="findings" name="findings" rows="7" ${canSign ? "" : "readonly"}>${text.findings}</textarea>
    <label for="impression">Impression</label>
    <textarea id="impression" name="impression" rows="3" ${canSign ? "" : "readonly"}>${text.impression}</textarea>
    <p class="hint">Left unchanged, the text is rewritten from your grades when you sign; edited, it is signed as written.</p>
    ${canSign ? html`<button type="submit" id="sign">${latest ? "Sign amendment" : "Sign"} (Enter)</button>` : html`<p class="hint">Read only: your role cannot sign.</p>`}
  </form>
</div>
${history.length > 0 ? html`<h2>Signatures</h2><ul class="history">${history}</ul>` : ""}`;
  return page(title, body, { user, csrf, scripts: ["/static/review.js"] });
}

function deliveryState(
  report: { deliveries: { status: string; lastError: string | null }[] } | undefined,
) {
  if (!report) return "being written";
  const d = report.deliveries[0];
  if (!d) return "written";
  if (d.status === "SENT") return "delivered to the PACS";
  if (d.status === "FAILED") return `NOT delivered (dead letter): ${d.lastError ?? ""}`;
  return "waiting for the PACS";
}
