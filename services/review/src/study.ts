/**
 * One study on screen: its graded revision, each knee's AI result and caveats, the signatures so
 * far, and the signing form (keyboard: 0–4 per knee, Enter to sign; see public/review.js).
 */
import {
  KL_GRADE_WORDS,
  type KneeDecision,
  lateralityAssumed,
  type ReportInput,
  reportUids,
} from "@kneegrade/dicom-writers";
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { audit, type ReviewDeps, signedIn, studyUid } from "./context.ts";
import {
  aiDecisions,
  type Decisions,
  decisionsOf,
  type GradedJob,
  previewText,
  reportTextFor,
  SignForm,
  textInput,
} from "./decisions.ts";
import { dicomDate, type Html, html, localTime, type PageUser, page, personName } from "./html.ts";
import { type MissingKnee, SIDE_LABEL, type Side } from "./missing.ts";
import {
  type LoadedStudy,
  loadImageSizes,
  loadPriors,
  loadStudy,
  loadUngradedImages,
  type Prior,
  type UngradedImage,
} from "./study-data.ts";

const OUTCOME_WORDS = {
  REFUSED: "refused by the AI",
  FAILED: "could not be read",
  NOT_KNEE: "not a knee radiograph",
} as const;

/** The list of images not graded, each with its view and the reason. */
function ungradedList(images: UngradedImage[]): Html {
  return html`<ul class="ungraded" id="ungraded">${images.map(
    (im) =>
      html`<li data-sop="${im.sopInstanceUid}"><b>${[im.viewPosition ?? "view unknown", im.imageLaterality ? `laterality ${im.imageLaterality}` : ""].filter(Boolean).join(", ")}</b> — ${OUTCOME_WORDS[im.outcome]}: ${im.reason}</li>`,
  )}</ul>`;
}

const pct = (p: number) => `${(p * 100).toFixed(1)} %`;
const kl = (d: KneeDecision) => (d.grade === null ? "not gradable" : `KL${d.grade}`);

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

export interface StudyPageOptions {
  notice?: Html;
  /** The radiologist chose "Amend" on a signed study. */
  amend?: boolean;
  /** REVIEW_VIEWER_URL: the site's viewer, `{StudyInstanceUID}` and `{AccessionNumber}` replaced. */
  viewerUrl?: string;
  /** Earlier studies of the patient (loadPriors). */
  priors?: Prior[];
  /** Original size of each radiograph (loadImageSizes), to draw the knee regions over it. */
  imageSizes?: Map<string, { width: number; height: number }>;
  /** The study's images that have no grade (loadUngradedImages). */
  ungraded?: UngradedImage[];
}

const klOrNg = (g: number | null) => (g === null ? "not gradable" : `KL${g}`);
const SHORT = { RIGHT: "R", LEFT: "L", UNKNOWN: "?" } as const;

/** A knee's label on the radiograph: "R · AI KL2", or "R · you KL1 · AI KL2" when they differ. */
export const regionLabel = (side: Side, d: KneeDecision, ai: number) =>
  d.grade === ai
    ? `${SHORT[side]} · AI KL${ai}`
    : `${SHORT[side]} · you ${d.grade === null ? "n/g" : `KL${d.grade}`} · AI KL${ai}`;

/** The study in the site's viewer: the template with the study's identifiers, URL-encoded. */
export const viewerLink = (
  template: string,
  study: { studyInstanceUid: string; accessionNumber: string | null },
) =>
  template
    .replaceAll("{StudyInstanceUID}", encodeURIComponent(study.studyInstanceUid))
    .replaceAll("{AccessionNumber}", encodeURIComponent(study.accessionNumber ?? ""));

/** A study without a graded revision: refused whole, or not graded (yet). */
function ungradedStudyPage(
  s: LoadedStudy,
  title: string,
  user: PageUser,
  csrf: string,
  o: StudyPageOptions,
): string {
  const { study } = s;
  const ungraded = o.ungraded ?? [];
  // Only a settled refusal: a study still being graded may have refused an image already.
  const body =
    ungraded.length > 0 && study.status === "REFUSED"
      ? html`<h1>${title}</h1><p class="banner warning" id="none-graded">No image of this study was graded by the AI: ${ungraded.length === 1 ? "its only image was" : `all ${ungraded.length} of its images were`} refused (reasons below). There is nothing to sign here; read the study in the PACS.</p>${ungradedList(ungraded)}`
      : html`<h1>${title}</h1><p>This study has no graded revision (status ${study.status}).</p>${ungraded.length > 0 ? ungradedList(ungraded) : ""}`;
  return page(title, body, { user, csrf });
}

/** What the page of a graded revision is drawn from. */
interface GradedView {
  study: LoadedStudy["study"];
  job: GradedJob;
  missing: MissingKnee[];
  input: ReportInput;
  latest: GradedJob["reviews"][number] | undefined;
  decisions: Decisions;
  radiologist: boolean;
  /** A signed study is read only until its radiologist chooses "Amend". */
  editable: boolean;
  priors: Prior[];
  o: StudyPageOptions;
}

function gradedView(
  s: LoadedStudy,
  job: GradedJob,
  user: { role: string },
  o: StudyPageOptions,
): GradedView {
  const latest = job.reviews[0];
  const radiologist = user.role === "RADIOLOGIST";
  return {
    study: s.study,
    job,
    missing: s.missing ?? [],
    input: textInput(job),
    latest,
    decisions: latest ? decisionsOf(job, latest) : aiDecisions(job),
    radiologist,
    editable: radiologist && (!latest || o.amend === true),
    priors: o.priors ?? [],
    o,
  };
}

/**
 * Each graded knee's region and label over its radiograph, in the image's own pixels (the SVG
 * is stretched over the picture, whatever its scale); the label follows the grade chosen on
 * the page (review.js).
 */
function regionsOverlay(v: GradedView, instanceId: string) {
  const size = v.o.imageSizes?.get(instanceId);
  if (!size) return "";
  const stroke = Math.max(2, Math.round(size.width / 300));
  const font = Math.max(14, Math.round(size.width / 40));
  return html`<svg class="regions" viewBox="0 0 ${size.width} ${size.height}" preserveAspectRatio="none" aria-hidden="true" data-width="${size.width}" data-height="${size.height}">${v.job.results.map(
    (r, i) => {
      const g = r.region as { x: number; y: number; width: number; height: number } | null;
      if (!g || r.instance.id !== instanceId) return "";
      return html`<g data-region="${i}" data-side="${SHORT[r.laterality]}"><rect x="${g.x}" y="${g.y}" width="${g.width}" height="${g.height}" fill="none" stroke="#ffd400" stroke-width="${stroke}"/><text x="${g.x + stroke * 2}" y="${Math.max(font, g.y - stroke * 2)}" font-family="DejaVu Sans, sans-serif" font-size="${font}" font-weight="bold" fill="#ffd400" stroke="#000000" stroke-width="${Math.max(1, Math.round(stroke / 2))}" paint-order="stroke">${regionLabel(r.laterality, v.decisions.knees[i]!, r.klGrade)}</text></g>`;
    },
  )}</svg>`;
}

const gradeChoices = (name: string, chosen: number | "ng" | "np" | null, extra: Html | "") =>
  html`${[0, 1, 2, 3, 4].map(
    (g) =>
      html`<label class="choice"><input type="radio" name="${name}" value="${g}" ${chosen === g ? "checked" : ""}> ${g}</label>`,
  )}
    <label class="choice"><input type="radio" name="${name}" value="ng" ${chosen === "ng" ? "checked" : ""}> not gradable</label>${extra}`;

/** The most recent prior's crop of the same knee, with its final grade. */
function priorFigure(priors: Prior[], side: Side) {
  for (const p of priors) {
    const k = p.knees.find((x) => x.laterality === side && side !== "UNKNOWN");
    if (!k) continue;
    return html`<figure class="prior"><img src="/knees/${k.kneeResultId}/crop.png" alt="the same knee in the prior study" width="224" height="224"><figcaption>prior ${dicomDate(p.studyDate)}: ${klOrNg(k.grade)} (${p.signedBy ? `signed by ${personName(p.signedBy)}` : "AI, unsigned"})</figcaption></figure>`;
  }
  return "";
}

/** A graded knee: the AI's grade, crop, heat map and prior, probabilities, caveats, the choice. */
function kneeCard(v: GradedView, r: GradedJob["results"][number], i: number) {
  const probabilities = r.probabilities as number[];
  const d = v.decisions.knees[i]!;
  const chosen = d.grade === null ? "ng" : d.grade;
  const changed = d.grade !== r.klGrade;
  return html`<section class="knee" data-knee="${i}" data-ai="${r.klGrade}" id="knee-${i}" tabindex="-1">
  <h2>${SIDE_LABEL[r.laterality]} <span class="ai-grade">AI: KL ${r.klGrade} (${KL_GRADE_WORDS[r.klGrade]})</span> <span class="you" data-you>${changed ? `you: ${kl(d)} / AI: KL${r.klGrade}` : ""}</span></h2>
  <div class="tiles">
    <figure><img src="/knees/${r.id}/crop.png" alt="crop the model graded" width="224" height="224"><figcaption>graded crop${r.region ? html` <button type="button" class="secondary" data-enlarge="${r.id}" title="the knee's region from the original pixels, at 512 px or more">enlarge</button>` : ""}</figcaption></figure>
    ${r.heatmapPng ? html`<figure class="heat"><img src="/knees/${r.id}/heatmap.png" data-heat="/knees/${r.id}/heatmap.png" data-plain="/knees/${r.id}/crop.png" alt="heat map" width="224" height="224"><figcaption>where the model looked (KL ${r.klGrade}) <button type="button" class="secondary" data-heat-toggle>heat map off</button><span class="legend"><span>less</span><span class="ramp"></span><span>more attention</span></span></figcaption></figure>` : ""}
    ${priorFigure(v.priors, r.laterality)}
  </div>
  ${
    r.region
      ? html`<figure class="region" id="region-${r.id}" hidden><img data-src="/knees/${r.id}/region.png" alt="the knee's region from the original radiograph" width="512" height="512"></figure>`
      : ""
  }
  <table class="probabilities"><tr>${probabilities.map((_, g) => html`<th>KL${g}</th>`)}</tr>
  <tr>${probabilities.map((p, g) => html`<td class="${g === r.klGrade ? "ai" : ""}"><meter min="0" max="1" value="${p.toFixed(3)}"></meter>${pct(p)}</td>`)}</tr></table>
  ${caveats(r, v.input, i).map((c) => html`<p class="caveat">⚠ ${c}</p>`)}
  <fieldset class="decision" ${v.editable ? "" : "disabled"}>
    <legend>Radiologist's grade (keys 0–4, N: not gradable)</legend>
    ${gradeChoices(
      `knee_${r.id}`,
      chosen,
      html`
    <input type="text" name="reason_${r.id}" class="reason" placeholder="why not gradable" maxlength="200" value="${d.grade === null ? d.notGradableReason : ""}">`,
    )}
  </fieldset>
</section>`;
}

/** A knee the AI did not grade: where to look, and the radiologist's decision on it. */
function missingCard(v: GradedView, m: MissingKnee, j: number) {
  const i = v.job.results.length + j;
  const d = v.decisions.missing.get(m.key);
  const chosen = !d
    ? null
    : d.decision === "GRADED"
      ? d.grade
      : d.decision === "NOT_GRADABLE"
        ? "ng"
        : "np";
  return html`<section class="knee missing" data-knee="${i}" data-missing="${m.key}" id="knee-${i}" tabindex="-1">
  <h2>${SIDE_LABEL[m.laterality]} — not graded by the AI: ${m.reason}</h2>
  <p class="caveat">⚠ Look for this knee on the radiograph: grade it, or mark it not gradable or not present. Signing needs a decision.</p>
  <fieldset class="decision" ${v.editable ? "" : "disabled"}>
    <legend>Radiologist's decision (keys 0–4, N: not gradable, P: not present)</legend>
    ${gradeChoices(
      `missing_${m.key}`,
      chosen,
      html`
    <label class="choice"><input type="radio" name="missing_${m.key}" value="np" ${chosen === "np" ? "checked" : ""}> not present</label>
    <input type="text" name="missing_reason_${m.key}" class="reason" placeholder="why not gradable" maxlength="200" value="${d?.decision === "NOT_GRADABLE" ? d.reason : ""}">`,
    )}
  </fieldset>
</section>`;
}

/** One line per knee: the decision so far, and whether the AI agrees. */
function gradeSummary({ job, missing, decisions }: GradedView) {
  return [
    ...job.results.map((r, i) => {
      const d = decisions.knees[i]!;
      return html`<li data-summary="${i}">${SIDE_LABEL[r.laterality]}: <b>${kl(d)}</b>${d.grade !== r.klGrade ? html` <span class="changed">(AI: KL${r.klGrade})</span>` : html` <span class="hint">(AI agrees)</span>`}</li>`;
    }),
    ...missing.map((m, j) => {
      const d = decisions.missing.get(m.key);
      const words = !d
        ? html`<b class="required">decision required</b>`
        : d.decision === "GRADED"
          ? html`<b>KL${d.grade}</b>`
          : html`<b>${d.decision === "NOT_GRADABLE" ? "not gradable" : "not present"}</b>`;
      return html`<li data-summary="${job.results.length + j}">${SIDE_LABEL[m.laterality]}: ${words} <span class="changed">(not graded by the AI)</span></li>`;
    }),
  ];
}

/** Sign (and next, or stay), sign an amendment, or choose to amend; read only for other roles. */
function signButtons({ study, latest, radiologist, editable }: GradedView) {
  return !radiologist
    ? html`<p class="hint">Read only: your role cannot sign.</p>`
    : editable
      ? html`<div class="actions"><button type="submit" id="sign" name="after" value="next">${latest ? "Sign amendment" : "Sign"} &amp; next (Enter)</button> <button type="submit" id="sign-stay" name="after" value="stay" class="secondary">${latest ? "Sign amendment" : "Sign"}, stay here</button>${latest ? html` <a href="/studies/${study.studyInstanceUid}">Cancel</a>` : ""}</div>`
      : html`<p class="actions"><a class="button" id="amend" href="/studies/${study.studyInstanceUid}?amend=1">Amend this signature</a></p>`;
}

/** The title, the study's identifiers and the banners: test model, signed or not, knees missing. */
function studyHeading(v: GradedView, title: string) {
  const { study, job, latest, missing, editable, o } = v;
  const testModel = job.modelStatus === "smoke";
  return html`<h1>${title}</h1>
<p class="meta">Patient ID ${study.patientId ?? "—"} · accession ${study.accessionNumber ?? "—"} · revision ${study.revision} · model ${job.modelVersion ?? "?"} (${job.modelStatus ?? "?"})${o.viewerUrl ? html` · <a id="viewer-link" href="${viewerLink(o.viewerUrl, study)}" target="_blank" rel="noopener noreferrer">open in the viewer ↗</a>` : ""}</p>
${testModel ? html`<p class="banner test">TEST MODEL – NOT FOR CLINICAL USE: these grades come from a test model.</p>` : ""}
${latest ? html`<p class="banner signed" id="signed-banner">Signed by ${personName(latest.user.displayName)} at ${localTime(latest.signedAt)}${editable ? " — you are amending it: signing makes a new signed revision." : " — read only; choose Amend to change it."}</p>` : html`<p class="banner unverified">AI result, unverified: requires your review and signature.</p>`}
${missing.length > 0 ? html`<p class="banner warning" id="missing-banner">⚠ The AI did not grade ${missing.length === 1 ? "one knee" : `${missing.length} knees`} of this study: ${missing.map((m) => SIDE_LABEL[m.laterality].toLowerCase()).join(", ")}. Each needs your decision.</p>` : ""}
${o.notice ? html`<p class="notice" role="status" id="notice">${o.notice}</p>` : ""}
${(o.ungraded ?? []).length > 0 ? html`<div class="not-graded-images" id="not-graded-images"><p>${(o.ungraded ?? []).length === 1 ? "One image" : `${(o.ungraded ?? []).length} images`} of this study ${(o.ungraded ?? []).length === 1 ? "was" : "were"} not graded by the AI (no card: read ${(o.ungraded ?? []).length === 1 ? "it" : "them"} in the PACS):</p>${ungradedList(o.ungraded ?? [])}</div>` : ""}`;
}

/** Each radiograph with its knee regions, zoom and window tools. */
function radiographs(v: GradedView) {
  const { study, job } = v;
  const images = [...new Map(job.results.map((r) => [r.instance.id, r.instance])).values()];
  return images.map(
    (im) => html`<figure class="viewer-frame">
      <div class="viewer" data-viewer><img class="radiograph" src="/studies/${study.studyInstanceUid}/instances/${im.sopInstanceUid}.jpg" data-base="/studies/${study.studyInstanceUid}/instances/${im.sopInstanceUid}.jpg" alt="radiograph with the graded knee regions">${regionsOverlay(v, im.id)}</div>
      <figcaption class="image-tools">
        <button type="button" class="secondary" data-zoom="in" title="zoom in (full resolution; drag to pan)">zoom +</button><button type="button" class="secondary" data-zoom="out" title="zoom out">zoom -</button><button type="button" class="secondary" data-zoom="fit">fit</button>
        <label>window <input type="number" class="ww" step="any" min="1" placeholder="width"></label><label>level <input type="number" class="wc" step="any" placeholder="centre"></label><button type="button" class="secondary" data-window="apply">apply</button><button type="button" class="secondary" data-window="reset" title="the image's own window">reset</button>
      </figcaption>
    </figure>`,
  );
}

/** The signing form: a card per knee, the summary, the report text and the buttons. */
function signForm(v: GradedView, csrf: string) {
  const { study, job, missing, latest, editable } = v;
  const predecessor = latest?.sopInstanceUid ?? reportUids(job.id).aiSr;
  const text = latest
    ? { findings: latest.findings, impression: latest.impression }
    : reportTextFor(job, missing);
  // The text follows the grades while it is what they generate; edited text is the radiologist's.
  const generated = reportTextFor(job, missing, v.decisions);
  const follows = (["findings", "impression"] as const).filter((f) => generated[f] === text[f]);
  return html`<form method="post" action="/studies/${study.studyInstanceUid}/sign" id="sign-form" data-text="/studies/${study.studyInstanceUid}/report-text" data-follows="${follows.join(" ")}" data-editable="${editable ? "1" : "0"}">
    <input type="hidden" name="_csrf" value="${csrf}">
    <input type="hidden" name="predecessor" value="${predecessor}">
    ${latest && editable ? html`<input type="hidden" name="intent" value="amend">` : ""}
    <div class="knees">
    ${job.results.map((r, i) => kneeCard(v, r, i))}
    ${missing.map((m, j) => missingCard(v, m, j))}
    </div>
    <div class="panel" id="panel">
      <h2>Your report</h2>
      <ul class="summary" id="grade-summary">${gradeSummary(v)}</ul>
      <label for="findings">Findings</label>
      <textarea id="findings" name="findings" rows="8" ${editable ? "" : "readonly"}>${text.findings}</textarea>
      <label for="impression">Impression</label>
      <textarea id="impression" name="impression" rows="3" ${editable ? "" : "readonly"}>${text.impression}</textarea>
      <p class="hint" id="text-state"><span id="text-note">${follows.length === 2 ? "The text follows your grades; what you write yourself is signed as written." : "Text written by hand is signed as written: keep it in line with your grades."}</span>${editable ? html` <button type="button" id="regenerate" class="secondary">Rewrite from grades</button>` : ""}</p>
      ${signButtons(v)}
      <p class="hint">Keys act when the study has focus (not a link, button or text field): 0–4 grade, N not gradable${missing.length > 0 ? ", P not present" : ""}, ↑/↓ move between knees, Enter signs; Ctrl+Enter signs from anywhere in the form.</p>
    </div>
  </form>`;
}

/** The patient's earlier studies with their final grades. */
function priorsList(priors: Prior[]) {
  return priors.length > 0
    ? html`<h2>Prior studies of this patient</h2><ul class="priors" id="priors">${priors.map(
        (p) =>
          html`<li><a href="/studies/${p.studyInstanceUid}">${dicomDate(p.studyDate)}</a> · accession ${p.accessionNumber ?? "—"}: ${p.knees.map((k) => html`<span class="final">${SHORT[k.laterality]} ${k.grade === null ? "n/g" : `KL${k.grade}`}</span>`)} ${p.signedBy ? `(signed by ${personName(p.signedBy)})` : "(AI, unsigned)"}</li>`,
      )}</ul>`
    : "";
}

/** Each signature of the revision, with where its signed report has got to. */
function signatureHistory(job: GradedJob) {
  const signedReports = new Map(
    job.reports.filter((r) => r.verified).map((r) => [r.sopInstanceUid, r]),
  );
  const history = job.reviews.map(
    (rv) =>
      html`<li>${rv.sequence === 1 ? "Signed" : `Amendment ${rv.sequence - 1}`} by ${personName(rv.user.displayName)} (${rv.user.organisation}) at ${localTime(rv.signedAt)} — SR ${rv.sopInstanceUid}: ${deliveryState(signedReports.get(rv.sopInstanceUid))}</li>`,
  );
  return history.length > 0 ? html`<h2>Signatures</h2><ul class="history">${history}</ul>` : "";
}

export function studyPage(
  s: LoadedStudy,
  user: PageUser & { role: string },
  csrf: string,
  o: StudyPageOptions = {},
): string {
  const { study, job } = s;
  const title = `${personName(study.patientName)} · ${dicomDate(study.studyDate)}`;
  if (!job) return ungradedStudyPage(s, title, user, csrf, o);
  const v = gradedView(s, job, user, o);
  const body = html`
${studyHeading(v, title)}
<div class="study" id="study" tabindex="-1">
  <div class="radiographs">
    ${radiographs(v)}
  </div>
  ${signForm(v, csrf)}
</div>
${priorsList(v.priors)}
${signatureHistory(job)}`;
  return page(title, body, { user, csrf, scripts: ["/static/review.js"] });
}

const CHANNEL_ORDER = ["DICOM", "FHIR", "HL7"];

/** Each destination's state, PACS first: "delivered to the PACS; FHIR delivered; HL7 waiting". */
function deliveryState(
  report:
    | { deliveries: { channel: string; status: string; lastError: string | null }[] }
    | undefined,
) {
  if (!report) return "being written";
  if (report.deliveries.length === 0) return "written";
  return [...report.deliveries]
    .sort((a, b) => CHANNEL_ORDER.indexOf(a.channel) - CHANNEL_ORDER.indexOf(b.channel))
    .map((d) => {
      const pacs = d.channel === "DICOM";
      if (d.status === "SENT") return pacs ? "delivered to the PACS" : `${d.channel} delivered`;
      const where = pacs ? "" : `${d.channel} `;
      if (d.status === "FAILED") return `${where}NOT delivered (dead letter): ${d.lastError ?? ""}`;
      return pacs ? "waiting for the PACS" : `${d.channel} waiting`;
    })
    .join("; ");
}

/** The notice over the study: it was just signed, or the previous study was ("Sign & next"). */
async function signedNotice(
  db: ReviewDeps["db"],
  query: { signed?: string; previous?: string },
): Promise<Html | undefined> {
  const previous =
    typeof query.previous === "string" && /^[0-9.]{1,64}$/.test(query.previous)
      ? await db.study.findUnique({ where: { studyInstanceUid: query.previous } })
      : null;
  return previous
    ? html`Signed ${personName(previous.patientName)} (${dicomDate(previous.studyDate)}): the signed report is on its way to the PACS. This is the next study awaiting review: here Enter signs only after another key or a click. <a href="/studies/${previous.studyInstanceUid}" id="back">← back to the signed study</a>`
    : query.signed
      ? html`Signed: the signed report is on its way to the PACS.`
      : undefined;
}

export const studyRoutes: FastifyPluginAsync<ReviewDeps> = async (app, { db, config }) => {
  /** The study of the path with its current graded revision, or null (answered 404). */
  const studyOf = async (request: FastifyRequest) => {
    const uid = studyUid(request);
    const loaded = uid ? await loadStudy(db, uid) : null;
    return uid && loaded ? { uid, loaded } : null;
  };

  app.get("/studies/:uid", async (request, reply) => {
    const found = await studyOf(request);
    if (!found) return reply.callNotFound();
    const { uid, loaded } = found;
    await audit(db, "review.study-viewed", request, {
      studyInstanceUid: uid,
      details: { revision: loaded.study.revision },
    });
    const query = request.query as { signed?: string; previous?: string; amend?: string };
    const notice = await signedNotice(db, query);
    return reply.type("text/html").send(
      studyPage(loaded, signedIn(request), reply.csrfToken(), {
        ...(notice ? { notice } : {}),
        ...(config.REVIEW_VIEWER_URL ? { viewerUrl: config.REVIEW_VIEWER_URL } : {}),
        priors: await loadPriors(db, loaded.study),
        amend: query.amend === "1",
        imageSizes: await loadImageSizes(loaded),
        ungraded: await loadUngradedImages(db, loaded),
      }),
    );
  });

  // The report text for the grades chosen so far: the study page shows it as they change.
  app.get("/studies/:uid/report-text", async (request, reply) => {
    const found = await studyOf(request);
    if (!found?.loaded.job) return reply.callNotFound();
    const form = SignForm.safeParse(request.query);
    if (!form.success) return reply.status(400).send({ error: "not understood" });
    return previewText(found.loaded, form.data);
  });
};
