/**
 * Signing: a radiologist's decision per knee and the report text become a `Review` row (with one
 * `ReviewKnee` per knee: the AI's grade and theirs) in one transaction, then a `report-study` job
 * with the review's id asks the reporter to write the signed SR revision and deliver it — the same
 * path, retries, dead letter and `kneegrade redeliver` as the AI's report. The review pages never
 * write DICOM or talk to the PACS themselves.
 */
import { randomUUID } from "node:crypto";
import { QUEUES, ReportStudyJob, signedReportJobId } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { type KneeDecision, reportUids, signedSrUid } from "@kneegrade/dicom-writers";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import {
  audit,
  forbidden,
  type ReportQueue,
  type ReviewDeps,
  type SessionUser,
  signedIn,
  studyUid,
} from "./context.ts";
import {
  aiDecisions,
  type Decisions,
  decisionsOf,
  type GradedJob,
  reportTextFor,
  SignForm,
} from "./decisions.ts";
import { html, page } from "./html.ts";
import {
  type MissingKnee,
  missingDecisionOf,
  missingFindingLine,
  missingLabel,
} from "./missing.ts";
import { type LoadedStudy, loadStudy } from "./study-data.ts";
import { WorklistQuery, worklist } from "./worklist.ts";

export class SignError extends Error {
  constructor(
    readonly statusCode: 400 | 404 | 409 | 503,
    message: string,
  ) {
    super(message);
    this.name = "SignError";
  }
}

/** Whether two sets of decisions are the same, knee by knee (reasons included). */
export function sameDecisions(a: Decisions, b: Decisions): boolean {
  const knee = (d: KneeDecision) => (d.grade === null ? `ng:${d.notGradableReason}` : `${d.grade}`);
  const missing = (m: Decisions["missing"]) =>
    JSON.stringify([...m.entries()].sort(([x], [y]) => x.localeCompare(y)));
  return (
    a.knees.map(knee).join("|") === b.knees.map(knee).join("|") &&
    missing(a.missing) === missing(b.missing)
  );
}

/** Line endings as browsers submit them (CR LF) → "\n"; trailing blanks trimmed. */
const normalise = (s: string) =>
  s
    .replace(/\r\n?/g, "\n")
    .split("\n")
    .map((l) => l.trimEnd())
    .join("\n")
    .trim();

type Form = Record<string, string | undefined>;
type Latest = GradedJob["reviews"][number];
interface ReportText {
  findings: string;
  impression: string;
}

/**
 * The study's graded revision, if this page may sign it: a patient on record, the predecessor the
 * page showed still the latest, and an explicit "Amend" for a signed study.
 */
function signable(loaded: LoadedStudy | null, form: Form) {
  if (!loaded?.job) throw new SignError(404, "no graded revision of this study to sign");
  const { study, job } = loaded;
  // A report names its patient: a study whose identity did not survive ingest is not signed.
  if (!study.patientId?.trim() && !study.patientName?.trim()) {
    throw new SignError(
      409,
      "this study has no patient name or ID on record: it cannot be signed — ask IT to check what the modality sent",
    );
  }
  const latest = job.reviews[0];
  const expected = latest?.sopInstanceUid ?? reportUids(job.id).aiSr;
  if (form.predecessor !== expected) {
    throw new SignError(
      409,
      latest
        ? `already signed by ${latest.user.displayName} at ${latest.signedAt.toISOString()}: open the study again to amend that signature`
        : "this page is out of date: open the study again",
    );
  }
  // A signed study changes only through an explicit "Amend" (the amend page says so in its form).
  if (latest && form.intent !== "amend") {
    throw new SignError(
      409,
      `already signed by ${latest.user.displayName}: choose "Amend" on the study page to change that signature`,
    );
  }
  return { study, job, latest, expected, missing: loaded.missing ?? [] };
}

/** The form's decision on every knee: a grade, or not gradable with a reason (or not present). */
function formDecisions(job: GradedJob, missing: MissingKnee[], form: Form): Decisions {
  const knees: KneeDecision[] = job.results.map((r) => {
    const value = form[`knee_${r.id}`];
    if (value === "ng") {
      const reason = (form[`reason_${r.id}`] ?? "").trim().slice(0, 200);
      if (!reason) throw new SignError(400, "a knee marked not gradable needs a reason");
      return { grade: null, notGradableReason: reason };
    }
    if (value === undefined || !/^[0-4]$/.test(value)) {
      throw new SignError(400, "choose a grade (0–4) or 'not gradable' for every knee");
    }
    return { grade: Number(value) };
  });
  const decisions: Decisions = { knees, missing: new Map() };
  for (const m of missing) {
    const d = missingDecisionOf(form, m.key);
    if (d === undefined || d === "invalid") {
      throw new SignError(
        400,
        `${missingLabel(m)}: choose a grade (0–4), 'not gradable' or 'not present' for it`,
      );
    }
    if (d.decision === "NOT_GRADABLE" && !d.reason) {
      throw new SignError(400, "a knee marked not gradable needs a reason");
    }
    decisions.missing.set(m.key, d);
  }
  return decisions;
}

/**
 * The text as submitted, if it may be signed with these decisions. What you see is what you
 * sign: a field still holding the text the page showed for other grades (the page did not follow
 * the change) would contradict them: refused, never rewritten behind the radiologist's back.
 */
function signedText(
  job: GradedJob,
  missing: MissingKnee[],
  latest: Latest | undefined,
  decisions: Decisions,
  form: Form,
): ReportText {
  const text = {
    findings: normalise(form.findings ?? ""),
    impression: normalise(form.impression ?? ""),
  };
  if (!text.findings || !text.impression) {
    throw new SignError(400, "the findings and the impression cannot be empty");
  }
  const generated = reportTextFor(job, missing, decisions);
  const before = latest ? decisionsOf(job, latest) : aiDecisions(job);
  const shown = latest
    ? { findings: latest.findings, impression: latest.impression }
    : reportTextFor(job, missing);
  const changedDecisions = !sameDecisions(before, decisions);
  const stale = (["findings", "impression"] as const).filter(
    (field) =>
      changedDecisions &&
      text[field] === normalise(shown[field]) &&
      text[field] !== normalise(generated[field]),
  );
  if (stale.length > 0) {
    throw new SignError(
      409,
      `the ${stale.join(" and the ")} describe other grades than the ones you chose: update the text (or reload the page) and sign again`,
    );
  }
  for (const m of missing) {
    const line = missingFindingLine(m, decisions.missing.get(m.key));
    if (!text.findings.includes(line)) {
      throw new SignError(
        400,
        `the findings must keep the line for the knee the AI did not grade: "${line}"`,
      );
    }
  }
  // An amendment must change something: a second identical signature is refused.
  if (
    latest &&
    !changedDecisions &&
    text.findings === normalise(latest.findings) &&
    text.impression === normalise(latest.impression)
  ) {
    throw new SignError(
      409,
      "nothing changed: an amendment must change a grade or the text (the signature stands as it is)",
    );
  }
  return text;
}

type Signable = ReturnType<typeof signable>;

/** One `ReviewKnee` row per graded knee: the AI's grade and the radiologist's decision. */
const kneeRows = (job: GradedJob, decisions: Decisions) =>
  job.results.map((r, i) => {
    const d = decisions.knees[i]!;
    return {
      kneeResultId: r.id,
      aiGrade: r.klGrade,
      radiologistGrade: d.grade,
      notGradableReason: d.grade === null ? d.notGradableReason : null,
    };
  });

/** One row per knee the AI did not grade: why not, and the radiologist's decision. */
const missingKneeRows = (missing: MissingKnee[], decisions: Decisions) =>
  missing.map((m) => {
    const d = decisions.missing.get(m.key)!;
    return {
      instanceId: m.instanceId,
      laterality: m.laterality,
      aiCode: m.code,
      aiReason: m.reason,
      decision: d.decision,
      radiologistGrade: d.decision === "GRADED" ? d.grade : null,
      notGradableReason: d.decision === "NOT_GRADABLE" ? d.reason : null,
    };
  });

/** The audit event's grades per knee: the AI's and the radiologist's. */
const gradesAudited = (job: GradedJob, missing: MissingKnee[], decisions: Decisions) => ({
  knees: job.results.map((r, i) => ({
    laterality: r.laterality,
    ai: r.klGrade,
    radiologist: decisions.knees[i]!.grade,
  })),
  missing: missing.map((m) => ({
    laterality: m.laterality,
    ai: m.code,
    radiologist: decisions.missing.get(m.key)!.decision,
  })),
});

/** The `Review` row with one row per knee and its audit event, in one transaction. */
async function recordSignature(
  db: Db,
  { study, job, latest, expected, missing }: Signable,
  decisions: Decisions,
  text: ReportText,
  by: { user: { id: string; username: string }; address: string },
) {
  const id = randomUUID();
  const sequence = (latest?.sequence ?? 0) + 1;
  return db
    .$transaction(async (tx) => {
      const created = await tx.review.create({
        data: {
          id,
          studyId: study.id,
          gradingJobId: job.id,
          userId: by.user.id,
          sequence,
          predecessorSopInstanceUid: expected,
          sopInstanceUid: signedSrUid(id),
          findings: text.findings,
          impression: text.impression,
          knees: { create: kneeRows(job, decisions) },
          missingKnees: { create: missingKneeRows(missing, decisions) },
        },
      });
      await tx.auditEvent.create({
        data: {
          event: sequence === 1 ? "review.signed" : "review.amended",
          actor: by.user.username,
          studyInstanceUid: study.studyInstanceUid,
          sopInstanceUid: created.sopInstanceUid,
          address: by.address,
          details: {
            reviewId: id,
            revision: job.revision,
            sequence,
            predecessor: expected,
            ...gradesAudited(job, missing, decisions),
          },
        },
      });
      return created;
    })
    .catch((error: { code?: string }) => {
      // Two signatures of one predecessor at once: the unique index keeps the first.
      if (error.code === "P2002") {
        throw new SignError(409, "this revision was just signed by someone else");
      }
      throw error;
    });
}

/** Asks the reporter to write and deliver the signed SR. */
async function queueSignedReport(
  queue: ReportQueue,
  { study, job }: Signable,
  reviewId: string,
): Promise<void> {
  const payload = ReportStudyJob.parse({
    schemaVersion: 1,
    studyId: study.id,
    studyInstanceUid: study.studyInstanceUid,
    revision: job.revision,
    gradingJobId: job.id,
    reviewId,
  });
  try {
    await queue.add(QUEUES.reportStudy, payload, {
      jobId: signedReportJobId(study.studyInstanceUid, job.revision, reviewId),
    });
  } catch (error) {
    // The signature stands (it is in PostgreSQL); only its delivery waits for `redeliver`.
    throw new SignError(
      503,
      `Signed, but the signed report could not be queued for the PACS (${(error as Error).message}): ask IT to run \`kneegrade redeliver ${study.studyInstanceUid}\` once Redis answers.`,
    );
  }
}

export async function signStudy(
  db: Db,
  queue: ReportQueue,
  a: {
    studyInstanceUid: string;
    user: { id: string; username: string };
    form: Form;
    address: string;
  },
) {
  const target = signable(await loadStudy(db, a.studyInstanceUid), a.form);
  const decisions = formDecisions(target.job, target.missing, a.form);
  const text = signedText(target.job, target.missing, target.latest, decisions, a.form);
  const review = await recordSignature(db, target, decisions, text, a);
  await queueSignedReport(queue, target, review.id);
  return review;
}

/** The study page's "Not signed" answer, with the reason and the way back. */
const notSigned = (
  reply: FastifyReply,
  user: SessionUser,
  uid: string,
  status: number,
  why: string,
) =>
  reply
    .status(status)
    .type("text/html")
    .send(
      page(
        `Error ${status}`,
        html`<h1>Not signed</h1><p class="error" role="alert">${why}</p><p><a href="/studies/${uid}">Back to the study</a></p>`,
        { user, csrf: reply.csrfToken() },
      ),
    );

/** After signing: "Sign & next" opens the next study awaiting review, with a way back. */
async function afterSigning(db: Db, reply: FastifyReply, uid: string, after: string | undefined) {
  if (after === "next") {
    const next = (await worklist(db, WorklistQuery.parse({ show: "awaiting" }))).rows.find(
      (r) => r.studyInstanceUid !== uid,
    );
    if (next) {
      return reply.redirect(
        `/studies/${next.studyInstanceUid}?previous=${encodeURIComponent(uid)}`,
        303,
      );
    }
  }
  return reply.redirect(`/studies/${uid}?signed=1`, 303);
}

export const signRoutes: FastifyPluginAsync<ReviewDeps> = async (app, deps) => {
  const { db, log } = deps;
  const refused = (request: FastifyRequest, uid: string, reason: string) =>
    audit(db, "review.sign-refused", request, { studyInstanceUid: uid, details: { reason } });

  app.post("/studies/:uid/sign", async (request, reply) => {
    const uid = studyUid(request);
    if (!uid) return reply.callNotFound();
    const u = signedIn(request);
    if (u.role !== "RADIOLOGIST") {
      await refused(request, uid, `role ${u.role}`);
      return forbidden(request, reply, "Only radiologists sign reports.");
    }
    const started = Date.now();
    const form = SignForm.safeParse(request.body);
    if (!form.success) {
      const why =
        "The form was not understood: every field once, as text. Open the study again and sign from its page.";
      return notSigned(reply, u, uid, 400, why);
    }
    try {
      const review = await signStudy(db, deps.reportQueue, {
        studyInstanceUid: uid,
        user: u,
        form: form.data,
        address: request.ip,
      });
      log.info(
        {
          event: "review.signed",
          studyInstanceUid: uid,
          reviewId: review.id,
          ms: Date.now() - started,
        },
        "study signed",
      );
    } catch (error) {
      if (!(error instanceof SignError)) throw error;
      if (error.statusCode === 409) await refused(request, uid, error.message);
      return notSigned(reply, u, uid, error.statusCode, error.message);
    }
    return afterSigning(db, reply, uid, form.data.after);
  });
};
