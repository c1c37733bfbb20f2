/**
 * One `report-study` job: write the revision's report objects once (PostgreSQL `Report` rows with a
 * `Delivery` row each), then C-STORE every undelivered one to the PACS. A PACS that is down, slow
 * or refusing throws, and BullMQ retries with the delivery backoff; after the last attempt
 * `recordDeadLetter` marks the deliveries FAILED (the dead letter `kneegrade status` shows and
 * `kneegrade redeliver` sends again). Each SR's result also goes to the RIS when configured (FHIR,
 * HL7: `@kneegrade/ris`), as deliveries of their own in the same outbox. State lives in PostgreSQL
 * and the files in the spool, so a restarted reporter carries on: nothing is written twice,
 * nothing is lost.
 */
import { join } from "node:path";
import type { Config } from "@kneegrade/config";
import { ReportStudyJob } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { cStoreFiles, type DicomPeer } from "@kneegrade/dicom";
import type { Logger } from "@kneegrade/log";
import type { Metrics } from "@kneegrade/ops";
import { buildReportInput, writeReportObjects, writeSignedReport } from "@kneegrade/report-jobs";
import {
  ensureResultDeliveries,
  PermanentDeliveryError,
  type ResultChannel,
  type ResultOutputs,
  sendResult,
} from "@kneegrade/ris";
import { UnrecoverableError } from "bullmq";

export type ReporterConfig = Pick<
  Config,
  | "SPOOL_DIR"
  | "PACS_HOST"
  | "PACS_PORT"
  | "PACS_AET"
  | "LISTENER_AET"
  | "DIMSE_TIMEOUT_SECONDS"
  | "DEVICE_OBSERVER_UID"
  | "INSTITUTION_NAME"
  | "REPORT_SECONDARY_CAPTURE"
  | "REPORT_BASIC_TEXT_SR"
>;

export interface ReportJobContext {
  db: Db;
  config: ReporterConfig;
  /** Where reports go (PACS_* with TLS material read at start-up). */
  pacs: DicomPeer;
  log: Logger;
  /** Deliveries by outcome, when the process serves metrics. */
  metrics?: Metrics;
  /** Where results go besides the PACS (FHIR_*, HL7_*); none when absent. */
  outputs?: ResultOutputs;
}

/** C-STORE success, or one of the warning statuses (the object was stored). */
const stored = (status: number | null) =>
  status === 0 || (status !== null && (status & 0xf000) === 0xb000);

/**
 * A `report-study` job, top to bottom: check the payload and its grading job, write the report
 * objects once (and a signature's signed SR, when the job carries a review), deliver what is not
 * delivered yet, mark the study REPORTED.
 */
export async function processReportJob(data: unknown, attempt: number, ctx: ReportJobContext) {
  const job = parsePayload(data);
  const gradingJobId = await completedGradingJob(ctx.db, job);
  if ((await reportsOf(ctx.db, gradingJobId)).length === 0) {
    await writeReports(ctx, job, gradingJobId);
  }
  if (job.reviewId) {
    await writeSignedReport(ctx.db, job.reviewId, { ...ctx.config, pacs: ctx.pacs }, ctx.log);
  }
  if (ctx.outputs) await ensureResultDeliveries(ctx.db, gradingJobId, ctx.outputs);
  const reports = await reportsOf(ctx.db, gradingJobId);
  const delivered = await deliverPending(ctx, job, reports, attempt);
  await markReported(ctx, job, reports);
  return { delivered, objects: reports.length };
}

function parsePayload(data: unknown): ReportStudyJob {
  const parsed = ReportStudyJob.safeParse(data);
  if (!parsed.success) {
    throw new UnrecoverableError(
      `invalid report-study payload: ${parsed.error.issues[0]?.message}`,
    );
  }
  return parsed.data;
}

async function completedGradingJob(db: Db, job: ReportStudyJob): Promise<string> {
  const gradingJob = await db.gradingJob.findUnique({ where: { id: job.gradingJobId } });
  if (gradingJob?.status !== "COMPLETED") {
    throw new UnrecoverableError(`grading job ${job.gradingJobId} is not completed`);
  }
  return gradingJob.id;
}

/** The revision's report objects with their deliveries, oldest first. */
function reportsOf(db: Db, gradingJobId: string) {
  return db.report.findMany({
    where: { gradingJobId },
    include: { deliveries: true },
    orderBy: { createdAt: "asc" },
  });
}

type ReportWithDeliveries = Awaited<ReturnType<typeof reportsOf>>[number];

/**
 * Writes the AI's report objects into the spool and records them, each with a pending delivery to
 * the PACS, in one transaction (UIDs derive from the grading job: written once per revision).
 */
async function writeReports(ctx: ReportJobContext, job: ReportStudyJob, gradingJobId: string) {
  const { db, config } = ctx;
  const input = await buildReportInput(db, gradingJobId, config);
  const dir = join(config.SPOOL_DIR, "reports", job.studyInstanceUid);
  const written = await writeReportObjects(input, dir, {
    secondaryCapture: config.REPORT_SECONDARY_CAPTURE,
    basicTextSr: config.REPORT_BASIC_TEXT_SR,
  });
  await db.$transaction(async (tx) => {
    // The review worklist shows who and when (patient data stays in PostgreSQL, never in logs):
    // the graded image's values, held to the VR limits as at ingest; an absent one leaves what
    // ingest stored.
    await tx.study.update({
      where: { id: job.studyId },
      data: {
        patientName: input.context.patientName,
        patientId: input.context.patientId,
        studyDate: input.context.studyDate,
      },
    });
    for (const w of written) {
      // The UIDs are derived from the grading job: a concurrent writer collides here, not in the PACS.
      const existing = await tx.report.findUnique({
        where: { sopInstanceUid: w.sopInstanceUid },
      });
      if (existing) continue;
      await tx.report.create({
        data: {
          studyId: job.studyId,
          gradingJobId,
          sopInstanceUid: w.sopInstanceUid,
          seriesInstanceUid: w.seriesInstanceUid,
          sopClassUid: w.sopClassUid,
          path: w.path,
          sha256: w.sha256,
          deliveries: {
            create: {
              destinationAet: ctx.pacs.calledAet,
              host: ctx.pacs.host,
              port: ctx.pacs.port,
            },
          },
        },
      });
    }
    await tx.auditEvent.create({
      data: {
        event: "report.written",
        actor: "reporter",
        studyInstanceUid: job.studyInstanceUid,
        details: {
          revision: job.revision,
          objects: written.map((w) => ({ kind: w.kind, sopInstanceUid: w.sopInstanceUid })),
        },
      },
    });
  });
  ctx.log.info(
    { event: "report.written", studyInstanceUid: job.studyInstanceUid, objects: written.length },
    "report objects written",
  );
}

const pacsName = (pacs: DicomPeer) => `${pacs.calledAet}@${pacs.host}:${pacs.port}`;

/**
 * C-STOREs every object whose delivery is not SENT and records each outcome; throws (BullMQ
 * retries with backoff) when the PACS did not store them all. Returns how many were sent now.
 */
async function deliverPending(
  ctx: ReportJobContext,
  job: ReportStudyJob,
  reports: ReportWithDeliveries[],
  attempt: number,
): Promise<number> {
  const unsent = reports.flatMap((r) =>
    r.deliveries.filter((d) => d.status !== "SENT").map((d) => ({ report: r, delivery: d })),
  );
  if (unsent.length === 0) return 0;
  const pending = unsent.filter((p) => p.delivery.channel === "DICOM");
  const outcomes =
    pending.length > 0
      ? await cStoreFiles(
          ctx.pacs,
          pending.map((p) => p.report.path),
        )
      : [];
  const failures: string[] = [];
  const sentAt = new Date();
  // One batch for the whole association's outcomes: one round trip, not one per object.
  const updates = pending.map((p, i) => {
    const o = outcomes[i];
    const ok = o !== undefined && stored(o.status);
    const error = ok
      ? null
      : o?.status !== null && o?.status !== undefined
        ? `status 0x${o.status.toString(16).padStart(4, "0")}`
        : (o?.error ?? "no response");
    if (!ok) failures.push(`${p.report.sopInstanceUid}: ${error}`);
    ctx.metrics?.deliveries.inc({ outcome: ok ? "sent" : "failed" });
    return ctx.db.delivery.update({
      where: { id: p.delivery.id },
      data: {
        attempts: { increment: 1 },
        status: ok ? "SENT" : "PENDING",
        lastError: error,
        ...(ok ? { sentAt } : {}),
      },
    });
  });
  if (updates.length > 0) await ctx.db.$transaction(updates);
  // The results in report order: the AI's before a signature's, so the RIS ends at the latest.
  const results = unsent.filter((p) => p.delivery.channel !== "DICOM");
  // Another job of the same study (the AI result's, retrying, and a signature's) may be sending
  // the same pending result at this moment: each is sent under a row lock on its Delivery, taken
  // after waiting for the other job's send (not skipped: skipping would let a signature's result
  // overtake the AI's), and re-read under the lock, so what the other job sent is not sent again.
  const sendMs = Math.max(ctx.outputs?.fhir?.timeoutMs ?? 0, ctx.outputs?.hl7?.timeoutMs ?? 0);
  for (const p of results) {
    const channel = p.delivery.channel as ResultChannel;
    const outcome = await ctx.db.$transaction(
      async (tx) => {
        const claimed = await tx.$queryRaw<{ id: string }[]>`
          SELECT id FROM "Delivery" WHERE id = ${p.delivery.id}::uuid AND status <> 'SENT'
          FOR UPDATE`;
        if (claimed.length === 0) return undefined;
        let error: string | null = null;
        let permanent = false;
        try {
          await sendResult(
            ctx.db,
            { id: p.delivery.id, channel },
            p.report,
            ctx.outputs ?? {},
            ctx.config,
          );
        } catch (e) {
          error = (e instanceof Error ? e.message : String(e)).slice(0, 500);
          permanent = e instanceof PermanentDeliveryError;
        }
        await tx.delivery.update({
          where: { id: p.delivery.id },
          data: {
            attempts: { increment: 1 },
            status: error ? (permanent ? "FAILED" : "PENDING") : "SENT",
            lastError: error,
            ...(error ? {} : { sentAt: new Date() }),
          },
        });
        return { error, permanent };
      },
      // Long enough for the other job's send (waited for) and this one's.
      { maxWait: 10_000, timeout: 2 * sendMs + 15_000 },
    );
    if (!outcome) continue; // sent by the other job meanwhile
    const { error, permanent } = outcome;
    // A refusal no retry can change is dead-lettered now; the rest of the job carries on.
    if (error && !permanent) failures.push(`${channel} ${p.report.sopInstanceUid}: ${error}`);
    ctx.metrics?.resultDeliveries.inc({
      channel: channel.toLowerCase(),
      outcome: error ? (permanent ? "dead_letter" : "failed") : "sent",
    });
    if (permanent) {
      await ctx.db.auditEvent.create({
        data: {
          event: "report.dead-letter",
          actor: "reporter",
          studyInstanceUid: job.studyInstanceUid,
          sopInstanceUid: p.report.sopInstanceUid,
          details: { revision: job.revision, channel, deliveries: 1, error },
        },
      });
      ctx.log.error(
        {
          event: "report.dead-letter",
          studyInstanceUid: job.studyInstanceUid,
          channel,
          deliveries: 1,
          error,
        },
        "result refused for good: `kneegrade redeliver <study>` sends it again once the cause is fixed",
      );
    }
  }
  if (failures.length > 0) {
    ctx.log.warn(
      {
        event: "report.delivery-failed",
        studyInstanceUid: job.studyInstanceUid,
        attempt,
        pacs: pacsName(ctx.pacs),
        failures,
      },
      "the report was not delivered everywhere; retrying with backoff",
    );
    throw new Error(`not delivered (PACS ${pacsName(ctx.pacs)}): ${failures.join("; ")}`);
  }
  return unsent.length;
}

/** The study (still at this revision and GRADED) becomes REPORTED; the delivery is audited. */
async function markReported(
  ctx: ReportJobContext,
  job: ReportStudyJob,
  reports: ReportWithDeliveries[],
) {
  await ctx.db.$transaction([
    ctx.db.study.updateMany({
      where: { id: job.studyId, revision: job.revision, status: "GRADED" },
      data: { status: "REPORTED" },
    }),
    ctx.db.auditEvent.create({
      data: {
        event: "report.delivered",
        actor: "reporter",
        studyInstanceUid: job.studyInstanceUid,
        details: {
          revision: job.revision,
          pacs: pacsName(ctx.pacs),
          objects: reports.map((r) => r.sopInstanceUid),
        },
      },
    }),
  ]);
  ctx.log.info(
    { event: "report.delivered", studyInstanceUid: job.studyInstanceUid, objects: reports.length },
    "report delivered to the PACS",
  );
}

/** After the last attempt: the undelivered objects are dead-lettered, visibly. */
export async function recordDeadLetter(
  db: Db,
  data: unknown,
  error: Error,
  log: Logger,
  metrics?: Metrics,
) {
  const parsed = ReportStudyJob.safeParse(data);
  if (!parsed.success) {
    log.error({ event: "report.failed", err: error }, "invalid report-study job failed for good");
    return;
  }
  const job = parsed.data;
  // Job errors carry codes and UIDs only (ReportObjectError withholds the encoder's message).
  const message = error.message.slice(0, 1000);
  const code = (error as { code?: unknown }).code;
  const undelivered = {
    report: { gradingJobId: job.gradingJobId },
    status: { not: "SENT" as const },
  };
  const byChannel = await db.delivery.groupBy({
    by: ["channel"],
    where: undelivered,
    _count: { _all: true },
  });
  const dead = await db.delivery.updateMany({
    where: undelivered,
    data: { status: "FAILED", lastError: message },
  });
  for (const c of byChannel) {
    if (c.channel === "DICOM") metrics?.deliveries.inc({ outcome: "dead_letter" }, c._count._all);
    else {
      metrics?.resultDeliveries.inc(
        { channel: c.channel.toLowerCase(), outcome: "dead_letter" },
        c._count._all,
      );
    }
  }
  await db.auditEvent.create({
    data: {
      event: "report.dead-letter",
      actor: "reporter",
      studyInstanceUid: job.studyInstanceUid,
      details: {
        revision: job.revision,
        deliveries: dead.count,
        ...(typeof code === "string" ? { code } : {}),
        error: message,
      },
    },
  });
  log.error(
    {
      event: "report.dead-letter",
      studyInstanceUid: job.studyInstanceUid,
      deliveries: dead.count,
      err: error,
    },
    "report not delivered after the last attempt: `kneegrade redeliver <study>` sends it again",
  );
}
