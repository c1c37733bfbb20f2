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
import { type KneeDecision, reportUids, signedSrUid } from "@kneegrade/reports";
import { missingDecisionOf, missingFindingLine, missingLabel } from "./missing.ts";
import { aiDecisions, type Decisions, decisionsOf, loadStudy, reportTextFor } from "./study.ts";

/** What the reporter queue must offer (a BullMQ Queue does). */
export interface ReportQueue {
  add(name: string, data: ReportStudyJob, opts: { jobId: string }): Promise<unknown>;
}

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

export async function signStudy(
  db: Db,
  queue: ReportQueue,
  a: {
    studyInstanceUid: string;
    user: { id: string; username: string };
    form: Record<string, string | undefined>;
    address: string;
  },
) {
  const loaded = await loadStudy(db, a.studyInstanceUid);
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
  if (a.form.predecessor !== expected) {
    throw new SignError(
      409,
      latest
        ? `already signed by ${latest.user.displayName} at ${latest.signedAt.toISOString()}: open the study again to amend that signature`
        : "this page is out of date: open the study again",
    );
  }
  // A signed study changes only through an explicit "Amend" (the amend page says so in its form).
  if (latest && a.form.intent !== "amend") {
    throw new SignError(
      409,
      `already signed by ${latest.user.displayName}: choose "Amend" on the study page to change that signature`,
    );
  }
  const knees: KneeDecision[] = job.results.map((r) => {
    const value = a.form[`knee_${r.id}`];
    if (value === "ng") {
      const reason = (a.form[`reason_${r.id}`] ?? "").trim().slice(0, 200);
      if (!reason) throw new SignError(400, "a knee marked not gradable needs a reason");
      return { grade: null, notGradableReason: reason };
    }
    if (value === undefined || !/^[0-4]$/.test(value)) {
      throw new SignError(400, "choose a grade (0–4) or 'not gradable' for every knee");
    }
    return { grade: Number(value) };
  });
  const missing = loaded.missing ?? [];
  const decisions: Decisions = { knees, missing: new Map() };
  for (const m of missing) {
    const d = missingDecisionOf(a.form, m.key);
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
  const findings = normalise(a.form.findings ?? "");
  const impression = normalise(a.form.impression ?? "");
  if (!findings || !impression) {
    throw new SignError(400, "the findings and the impression cannot be empty");
  }
  // What you see is what you sign: the text is signed as submitted. A field still holding the
  // text the page showed for other grades (the page did not follow the change) would contradict
  // these grades: refused, never rewritten behind the radiologist's back.
  const generated = reportTextFor(job, missing, decisions);
  const before = latest ? decisionsOf(job, latest) : aiDecisions(job);
  const shown = latest
    ? { findings: latest.findings, impression: latest.impression }
    : reportTextFor(job, missing);
  const changedDecisions = !sameDecisions(before, decisions);
  const stale = (["findings", "impression"] as const).filter(
    (field) =>
      changedDecisions &&
      { findings, impression }[field] === normalise(shown[field]) &&
      { findings, impression }[field] !== normalise(generated[field]),
  );
  if (stale.length > 0) {
    throw new SignError(
      409,
      `the ${stale.join(" and the ")} describe other grades than the ones you chose: update the text (or reload the page) and sign again`,
    );
  }
  for (const m of missing) {
    const line = missingFindingLine(m, decisions.missing.get(m.key));
    if (!findings.includes(line)) {
      throw new SignError(
        400,
        `the findings must keep the line for the knee the AI did not grade: "${line}"`,
      );
    }
  }
  // An amendment must change something: a second identical signature is refused.
  if (
    latest &&
    sameDecisions(before, decisions) &&
    findings === normalise(latest.findings) &&
    impression === normalise(latest.impression)
  ) {
    throw new SignError(
      409,
      "nothing changed: an amendment must change a grade or the text (the signature stands as it is)",
    );
  }
  const text = { findings, impression };

  const id = randomUUID();
  const sequence = (latest?.sequence ?? 0) + 1;
  const review = await db
    .$transaction(async (tx) => {
      const created = await tx.review.create({
        data: {
          id,
          studyId: study.id,
          gradingJobId: job.id,
          userId: a.user.id,
          sequence,
          predecessorSopInstanceUid: expected,
          sopInstanceUid: signedSrUid(id),
          findings: text.findings,
          impression: text.impression,
          knees: {
            create: job.results.map((r, i) => {
              const d = decisions.knees[i]!;
              return {
                kneeResultId: r.id,
                aiGrade: r.klGrade,
                radiologistGrade: d.grade,
                notGradableReason: d.grade === null ? d.notGradableReason : null,
              };
            }),
          },
          missingKnees: {
            create: missing.map((m) => {
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
            }),
          },
        },
      });
      await tx.auditEvent.create({
        data: {
          event: sequence === 1 ? "review.signed" : "review.amended",
          actor: a.user.username,
          studyInstanceUid: study.studyInstanceUid,
          sopInstanceUid: created.sopInstanceUid,
          address: a.address,
          details: {
            reviewId: id,
            revision: job.revision,
            sequence,
            predecessor: expected,
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
  const payload = ReportStudyJob.parse({
    schemaVersion: 1,
    studyId: study.id,
    studyInstanceUid: study.studyInstanceUid,
    revision: job.revision,
    gradingJobId: job.id,
    reviewId: review.id,
  });
  try {
    await queue.add(QUEUES.reportStudy, payload, {
      jobId: signedReportJobId(study.studyInstanceUid, job.revision, review.id),
    });
  } catch (error) {
    // The signature stands (it is in PostgreSQL); only its delivery waits for `redeliver`.
    throw new SignError(
      503,
      `Signed, but the signed report could not be queued for the PACS (${(error as Error).message}): ask IT to run \`kneegrade redeliver ${study.studyInstanceUid}\` once Redis answers.`,
    );
  }
  return review;
}
