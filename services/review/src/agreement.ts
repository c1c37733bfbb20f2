/**
 * The agreement page: the figures of `agreementReport` (@kneegrade/review-data) as a table and a
 * confusion-matrix picture.
 */
import { confusionSvg } from "@kneegrade/grading-metrics";
import { type AgreementReport, agreementReport } from "@kneegrade/review-data";
import type { FastifyPluginAsync } from "fastify";
import sharp from "sharp";
import { z } from "zod";
import { type ReviewDeps, signedIn } from "./context.ts";
import { html, type PageUser, page } from "./html.ts";

/** The confusion matrix as a picture (rows: radiologist, columns: AI). */
export async function confusionPng(r: AgreementReport): Promise<Buffer> {
  const svg = confusionSvg(
    {
      n: r.knees,
      accuracy: r.exact ?? 0,
      qwk: r.qwk ?? 0,
      confusion: r.confusion,
    },
    `AI vs radiologist, last ${r.windowDays} days`,
    "dark",
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
<p class="hint">Outlined in yellow: the diagonal, where the radiologist's grade and the AI's agree.</p>
<p class="hint">Since ${r.since}; the latest signature of each study revision counts (amendments replace earlier signatures).</p>`;
  return page("Agreement", body, { user, csrf });
}

const Days = z.object({ days: z.coerce.number().int().min(1).max(3650).optional() });

export const agreementRoutes: FastifyPluginAsync<ReviewDeps> = async (app, { db, config }) => {
  /** The report over the window the URL asks for, else the configured one. */
  const report = (query: unknown) => {
    const q = Days.safeParse(query);
    return agreementReport(db, config, q.success ? q.data.days : undefined);
  };
  app.get("/agreement", async (request, reply) =>
    reply
      .type("text/html")
      .send(agreementPage(await report(request.query), signedIn(request), reply.csrfToken())),
  );
  app.get("/agreement/confusion.png", async (request, reply) =>
    reply.type("image/png").send(await confusionPng(await report(request.query))),
  );
};
