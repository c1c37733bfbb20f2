/**
 * The worklist: graded study revisions, newest first, with the AI's grade per knee, flags
 * (low localisation confidence, test model) and whether a radiologist signed them. One SQL
 * statement per page plus one for the counts, so it stays fast with thousands of studies.
 */
import { type Db, Prisma } from "@kneegrade/db";
import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import { type ReviewDeps, signedIn } from "./context.ts";
import { dicomDate, html, localTime, type PageUser, page, personName } from "./html.ts";

export const PAGE_SIZE = 50;

export const WorklistQuery = z.object({
  show: z.enum(["awaiting", "signed", "all"]).default("awaiting"),
  flagged: z
    .enum(["0", "1"])
    .default("0")
    .transform((v) => v === "1"),
  page: z.coerce.number().int().min(1).max(100_000).default(1),
});
export type WorklistQuery = z.infer<typeof WorklistQuery>;

export interface WorklistRow {
  studyInstanceUid: string;
  patientName: string | null;
  patientId: string | null;
  studyDate: string | null;
  accessionNumber: string | null;
  receivedAt: Date;
  modelStatus: string | null;
  knees: { laterality: string; grade: number; lowConfidence: boolean }[];
  signedSequence: number | null;
  /** The AI did not grade a knee the radiograph shows (missing.ts decides which). */
  missing: boolean;
  /** The latest signature: the radiologist's grades, who signed and when. */
  finalKnees: { laterality: string; grade: number | null }[] | null;
  finalMissing: { laterality: string; grade: number | null; decision: string }[] | null;
  signer: string | null;
  signedAt: Date | null;
}

export interface WorklistCounts {
  awaiting: number;
  signed: number;
  all: number;
  flagged: number;
}

/** Graded revisions: the study's current revision, graded to completion. */
const GRADED = Prisma.sql`
  FROM "Study" s
  JOIN "GradingJob" j ON j."studyId" = s.id AND j.revision = s.revision AND j.status = 'COMPLETED'
  WHERE s.status IN ('GRADED', 'REPORTED')
    AND EXISTS (SELECT 1 FROM "KneeResult" k WHERE k."gradingJobId" = j.id)`;
const SIGNED = Prisma.sql`EXISTS (SELECT 1 FROM "Review" r WHERE r."gradingJobId" = j.id)`;
/** A knee the AI did not grade: an arthroplasty, a region its verifier refused, or one knee of a
 * bilateral view (the same cases as missing.ts, which names them). */
const MISSING = Prisma.sql`EXISTS (
  SELECT 1 FROM "InstanceGrading" g JOIN "Instance" i ON i.id = g."instanceId"
  WHERE g."gradingJobId" = j.id AND g.outcome = 'GRADED'
    AND (jsonb_array_length(g."notGraded") > 0
      OR (g."kneesFound" = 1 AND (g.warnings::text ILIKE '%not taken for a knee%'
                                  OR upper(trim(i."imageLaterality")) = 'B'))))`;
const FLAGGED = Prisma.sql`(j."modelStatus" = 'smoke' OR ${MISSING} OR EXISTS (
  SELECT 1 FROM "KneeResult" k WHERE k."gradingJobId" = j.id AND k."lowConfidence"))`;
const LATEST_REVIEW = Prisma.sql`(SELECT r.id FROM "Review" r WHERE r."gradingJobId" = j.id
  ORDER BY r.sequence DESC LIMIT 1)`;

export async function worklist(
  db: Db,
  q: WorklistQuery,
): Promise<{ rows: WorklistRow[]; counts: WorklistCounts; matching: number }> {
  const shown =
    q.show === "awaiting"
      ? Prisma.sql`NOT ${SIGNED}`
      : q.show === "signed"
        ? SIGNED
        : Prisma.sql`TRUE`;
  const conditions = [
    Prisma.sql`AND ${shown}`,
    q.flagged ? Prisma.sql`AND ${FLAGGED}` : Prisma.empty,
  ];
  const [rows, [counts], [matching]] = await Promise.all([
    db.$queryRaw<WorklistRow[]>`
      SELECT s."studyInstanceUid", s."patientName", s."patientId", s."studyDate",
             s."accessionNumber", s."lastReceivedAt" AS "receivedAt", j."modelStatus",
             (SELECT json_agg(json_build_object('laterality', k.laterality, 'grade', k."klGrade",
                     'lowConfidence', k."lowConfidence") ORDER BY k.laterality DESC)
                FROM "KneeResult" k WHERE k."gradingJobId" = j.id) AS knees,
             (SELECT max(r.sequence) FROM "Review" r WHERE r."gradingJobId" = j.id)
               AS "signedSequence",
             ${MISSING} AS missing,
             (SELECT json_agg(json_build_object('laterality', k.laterality,
                     'grade', rk."radiologistGrade") ORDER BY k.laterality DESC)
                FROM "ReviewKnee" rk JOIN "KneeResult" k ON k.id = rk."kneeResultId"
               WHERE rk."reviewId" = ${LATEST_REVIEW}) AS "finalKnees",
             (SELECT json_agg(json_build_object('laterality', m.laterality,
                     'grade', m."radiologistGrade", 'decision', m.decision))
                FROM "ReviewMissingKnee" m WHERE m."reviewId" = ${LATEST_REVIEW})
               AS "finalMissing",
             (SELECT u."displayName" FROM "Review" r JOIN "User" u ON u.id = r."userId"
               WHERE r.id = ${LATEST_REVIEW}) AS signer,
             (SELECT r."signedAt" FROM "Review" r WHERE r.id = ${LATEST_REVIEW}) AS "signedAt"
      ${GRADED} ${Prisma.join(conditions, " ")}
      ORDER BY s."lastReceivedAt" DESC, s.id
      LIMIT ${PAGE_SIZE} OFFSET ${(q.page - 1) * PAGE_SIZE}`,
    db.$queryRaw<Record<keyof WorklistCounts, bigint>[]>`
      SELECT count(*) FILTER (WHERE NOT ${SIGNED}) AS awaiting,
             count(*) FILTER (WHERE ${SIGNED}) AS signed,
             count(*) AS "all",
             count(*) FILTER (WHERE ${FLAGGED} AND ${shown}) AS flagged
      ${GRADED}`,
    db.$queryRaw<{ n: bigint }[]>`SELECT count(*) AS n ${GRADED} ${Prisma.join(conditions, " ")}`,
  ]);
  return {
    rows,
    matching: Number(matching?.n ?? 0),
    counts: {
      awaiting: Number(counts?.awaiting ?? 0),
      signed: Number(counts?.signed ?? 0),
      all: Number(counts?.all ?? 0),
      flagged: Number(counts?.flagged ?? 0),
    },
  };
}

const SIDE: Record<string, string> = { RIGHT: "R", LEFT: "L", UNKNOWN: "?" };

/** The signed grades: "R KL2" per knee, "R n/g" not gradable, "R absent" not present. */
function finalGrades(r: WorklistRow) {
  const words = [
    ...(r.finalKnees ?? []).map(
      (k) => `${SIDE[k.laterality] ?? "?"} ${k.grade === null ? "n/g" : `KL${k.grade}`}`,
    ),
    ...(r.finalMissing ?? []).map(
      (m) =>
        `${SIDE[m.laterality] ?? "?"} ${m.decision === "GRADED" ? `KL${m.grade}` : m.decision === "NOT_PRESENT" ? "absent" : "n/g"}`,
    ),
  ];
  return words.map((w) => html`<span class="final">${w}</span>`);
}

export function worklistPage(
  q: WorklistQuery,
  data: { rows: WorklistRow[]; counts: WorklistCounts; matching: number },
  user: PageUser,
  csrf: string,
): string {
  const link = (o: Partial<{ show: string; flagged: boolean; page: number }>) => {
    const p = new URLSearchParams({
      show: o.show ?? q.show,
      flagged: (o.flagged ?? q.flagged) ? "1" : "0",
      page: String(o.page ?? 1),
    });
    return `/?${p}`;
  };
  const pages = Math.max(1, Math.ceil(data.matching / PAGE_SIZE));
  const tab = (show: WorklistQuery["show"], label: string, n: number) =>
    html`<a class="${q.show === show ? "tab current" : "tab"}" href="${link({ show })}">${label} <span class="count" data-count="${show}">${n}</span></a>`;
  const body = html`
<h1>Worklist</h1>
<div class="tabs" id="counts">
  ${tab("awaiting", "Awaiting review", data.counts.awaiting)}
  ${tab("signed", "Signed", data.counts.signed)}
  ${tab("all", "All", data.counts.all)}
  <a class="${q.flagged ? "tab current" : "tab"}" href="${link({ flagged: !q.flagged })}">${q.flagged ? "✓ " : ""}Flagged only <span class="count" data-count="flagged">${data.counts.flagged}</span></a>
</div>
<table class="worklist">
<thead><tr><th>Patient</th><th>Patient ID</th><th>Study date</th><th>Accession</th><th>Received</th><th>AI grades</th><th>Flags</th><th>Status</th></tr></thead>
<tbody>
${data.rows.map(
  (r) => html`<tr data-href="/studies/${r.studyInstanceUid}">
  <td><a href="/studies/${r.studyInstanceUid}">${personName(r.patientName)}</a></td>
  <td>${r.patientId ?? "—"}</td>
  <td>${dicomDate(r.studyDate)}</td>
  <td>${r.accessionNumber ?? ""}</td>
  <td>${localTime(r.receivedAt)}</td>
  <td>${(r.knees ?? []).map((k) => html`<span class="grade">${SIDE[k.laterality] ?? "?"} KL${k.grade}</span> `)}</td>
  <td>${r.modelStatus === "smoke" ? html`<span class="flag test">test model</span> ` : ""}${r.missing ? html`<span class="flag missing">knee not graded by AI</span> ` : ""}${(r.knees ?? []).some((k) => k.lowConfidence) ? html`<span class="flag low">low confidence</span>` : ""}</td>
  <td>${r.signedSequence ? html`<span class="signed">signed${r.signedSequence > 1 ? ` (amended ${r.signedSequence - 1}×)` : ""}</span> ${finalGrades(r)}<br><small>${personName(r.signer)}, ${r.signedAt ? localTime(new Date(r.signedAt)) : ""}</small>` : html`<span class="awaiting">awaiting review</span>`}</td>
</tr>`,
)}
${data.rows.length === 0 ? html`<tr><td colspan="8" class="empty">Nothing here.</td></tr>` : ""}
</tbody>
</table>
<p class="pager">Page ${q.page} of ${pages}
${q.page > 1 ? html`<a href="${link({ page: q.page - 1 })}" rel="prev">← previous</a>` : ""}
${q.page < pages ? html`<a href="${link({ page: q.page + 1 })}" rel="next">next →</a>` : ""}
</p>`;
  return page("Worklist", body, { user, csrf, scripts: ["/static/review.js"] });
}

/** The worklist query of the URL; one not understood shows the default worklist. */
const queryOf = (query: unknown) => {
  const q = WorklistQuery.safeParse(query);
  return q.success ? q.data : WorklistQuery.parse({});
};

export const worklistRoutes: FastifyPluginAsync<ReviewDeps> = async (app, { db }) => {
  app.get("/", async (request, reply) => {
    const query = queryOf(request.query);
    const data = await worklist(db, query);
    return reply
      .type("text/html")
      .send(worklistPage(query, data, signedIn(request), reply.csrfToken()));
  });

  // The worklist's counts, refreshed by review.js while the page is open ("live counts").
  app.get("/counts.json", async (request) => (await worklist(db, queryOf(request.query))).counts);
};
