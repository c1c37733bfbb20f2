/**
 * The operator's view, `kneegrade status [--json]`. The JSON shape is an interface: fields are only
 * ever added (bump `schemaVersion` on any other change). Documented in docs/OPERATIONS.md.
 */
import type { Config } from "@kneegrade/config";
import { QUEUES, type QueueName } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { createQueue } from "@kneegrade/queue";
import { type AgreementReport, agreementReport } from "@kneegrade/review-data";
import { outputChecks, resultOutputs } from "@kneegrade/ris";

export const JOB_STATES = ["waiting", "active", "delayed", "completed", "failed"] as const;
type JobCounts = Record<(typeof JOB_STATES)[number], number>;

export interface StatusReport {
  schemaVersion: 1;
  generatedAt: string;
  studies: { total: number; byStatus: Record<string, number> };
  /** `refused`: C-STOREs answered with a failure status (nothing kept); `resent`: resends ignored. */
  instances: { received: number; knee: number; notKnee: number; resent: number; refused: number };
  /** Associations refused (unknown AE titles, too many at once), from the audit trail. */
  associations: { rejected: number };
  skipped: { reason: string; studies: number }[];
  queues: Record<QueueName, JobCounts | { error: string }>;
  jobs: { byStatus: Record<string, number> };
  /** Studies graded / refused by the worker / failed; instance outcomes; knees graded; the model. */
  grading: {
    studies: { graded: number; refused: number; failed: number };
    instances: Record<string, number>;
    knees: number;
    lastModel: { version: string; status: string | null; providers: unknown } | null;
  };
  /**
   * The grading queue's expected wait (added to schema version 1): studies ahead of one queued now
   * (waiting and running), the recent grading time per study, and their product; null when Redis
   * does not answer or nothing was graded yet.
   */
  wait: { studiesAhead: number | null; secondsPerStudy: number | null; seconds: number | null };
  /** byChannel: DICOM (the PACS), FHIR, HL7 → status → count (added to schema version 1). */
  deliveries: {
    byStatus: Record<string, number>;
    byChannel: Record<string, Record<string, number>>;
  };
  /**
   * Radiologist review: graded revisions awaiting a signature, signatures, and the AI's agreement
   * with the radiologists over REVIEW_AGREEMENT_DAYS (added to schema version 1).
   */
  review: { awaiting: number; signed: number; agreement: AgreementReport };
  /**
   * The result outputs to the RIS, checked now from this process (the FHIR server's
   * CapabilityStatement, a connection to the HL7 peer); absent when not configured (added to
   * schema version 1).
   */
  outputs: { fhir?: OutputState; hl7?: OutputState };
  recentStudies: {
    studyInstanceUid: string;
    status: string;
    revision: number;
    instances: number;
    kneeInstances: number;
    lastReceivedAt: string;
    statusReason: string | null;
    jobs: { jobId: string; revision: number; status: string }[];
  }[];
  /** What an operator should look at: PostgreSQL and Redis disagree, jobs that cannot be queued. */
  warnings: string[];
}

export interface OutputState {
  /** The FHIR base URL, or the HL7 peer's host:port (no credentials). */
  target: string;
  reachable: boolean;
  error?: string;
}

/** Checks the configured result outputs, all at once (each gives up after 5 s). */
async function checkOutputs(config: Config): Promise<StatusReport["outputs"]> {
  let configured: ReturnType<typeof resultOutputs>;
  try {
    configured = resultOutputs(config);
  } catch (error) {
    // A TLS file that cannot be read: the reporter stops on it too; say which.
    const reason = (error as Error).message;
    return {
      ...(config.FHIR_BASE_URL
        ? { fhir: { target: config.FHIR_BASE_URL, reachable: false, error: reason } }
        : {}),
      ...(config.HL7_HOST
        ? {
            hl7: {
              target: `${config.HL7_HOST}:${config.HL7_PORT}`,
              reachable: false,
              error: reason,
            },
          }
        : {}),
    };
  }
  const checks = Object.entries(outputChecks(configured));
  const states = await Promise.all(
    checks.map(async ([name, c]) => {
      try {
        await c.check();
        return [name, { target: c.target, reachable: true }] as const;
      } catch (error) {
        const reason = (error as Error).message;
        return [name, { target: c.target, reachable: false, error: reason }] as const;
      }
    }),
  );
  return Object.fromEntries(states);
}

const countBy = <T extends string>(rows: { key: T; n: number }[]) =>
  Object.fromEntries(rows.map((r) => [r.key, r.n])) as Record<string, number>;

/** Completed grading jobs the service time is measured over (the latest ones). */
export const SERVICE_TIME_JOBS = 20;

/**
 * Seconds of grading per study, from recent jobs' start and finish times: the time during which at
 * least one of them was running, divided by their number. Jobs running side by side (one worker's
 * WORKER_CONCURRENCY, several workers) share that time, and idle gaps between bursts do not count.
 * Null without a completed job.
 */
export function serviceSecondsPerStudy(
  jobs: { startedAt: Date; finishedAt: Date }[],
): number | null {
  if (jobs.length === 0) return null;
  const spans = jobs
    .map((j) => [j.startedAt.getTime(), Math.max(j.startedAt.getTime(), j.finishedAt.getTime())])
    .sort((x, y) => x[0]! - y[0]!);
  let busy = 0;
  let [from, to] = spans[0]!;
  for (const [start, end] of spans.slice(1)) {
    if (start! > to!) {
      busy += to! - from!;
      [from, to] = [start, end];
    } else {
      to = Math.max(to!, end!);
    }
  }
  busy += to! - from!;
  return busy / 1000 / jobs.length;
}

export async function collectStatus(db: Db, config: Config, recent = 10): Promise<StatusReport> {
  const [grading, intake, queues, review, outputs] = await Promise.all([
    gradingFigures(db),
    intakeFigures(db, recent),
    queueCounts(config),
    reviewFigures(db, config),
    checkOutputs(config),
  ]);
  const warnings = warningsOf(outputs, review.agreement, queues, grading);
  return {
    schemaVersion: 1,
    generatedAt: new Date().toISOString(),
    studies: intake.studies,
    instances: intake.instances,
    associations: intake.associations,
    skipped: intake.skipped,
    queues,
    jobs: grading.jobs,
    grading: {
      studies: {
        // Graded studies stay counted once reported.
        graded: (intake.studies.byStatus.GRADED ?? 0) + (intake.studies.byStatus.REPORTED ?? 0),
        // Refused by the worker (no gradable knee); studies the listener routed away are "skipped".
        refused:
          (intake.studies.byStatus.REFUSED ?? 0) -
          intake.skipped.reduce((a, s) => a + (s.reason.startsWith("NOT_KNEE") ? s.studies : 0), 0),
        failed: intake.studies.byStatus.FAILED ?? 0,
      },
      instances: grading.instances,
      knees: grading.knees,
      lastModel: grading.lastModel,
    },
    wait: expectedWait(queues[QUEUES.gradeStudy], grading.secondsPerStudy),
    deliveries: intake.deliveries,
    review,
    outputs,
    recentStudies: intake.recentStudies,
    warnings,
  };
}

/** The worker's side: instance outcomes, knees, the last model, jobs by status, service time. */
async function gradingFigures(db: Db) {
  const [outcomes, knees, lastJob, jobs, expectedInRedis, unqueueable, recentJobs] =
    await Promise.all([
      db.instanceGrading.groupBy({ by: ["outcome"], _count: { _all: true } }),
      db.kneeResult.count(),
      db.gradingJob.findFirst({
        where: { status: "COMPLETED", modelVersion: { not: null } },
        orderBy: { finishedAt: "desc" },
        select: { modelVersion: true, modelStatus: true, providers: true },
      }),
      db.gradingJob.groupBy({ by: ["status"], _count: { _all: true } }),
      db.gradingJob.count({
        where: {
          queue: QUEUES.gradeStudy,
          status: { in: ["PENDING", "QUEUED", "ACTIVE"] },
          enqueuedAt: { not: null },
        },
      }),
      db.gradingJob.count({ where: { errorCode: "INVALID_JOB" } }),
      db.gradingJob.findMany({
        where: { status: "COMPLETED", startedAt: { not: null }, finishedAt: { not: null } },
        orderBy: { finishedAt: "desc" },
        take: SERVICE_TIME_JOBS,
        select: { startedAt: true, finishedAt: true },
      }),
    ]);
  return {
    instances: countBy(outcomes.map((o) => ({ key: o.outcome, n: o._count._all }))),
    knees,
    lastModel: lastJob?.modelVersion
      ? { version: lastJob.modelVersion, status: lastJob.modelStatus, providers: lastJob.providers }
      : null,
    jobs: { byStatus: countBy(jobs.map((j) => ({ key: j.status, n: j._count._all }))) },
    expectedInRedis,
    unqueueable,
    secondsPerStudy: serviceSecondsPerStudy(
      recentJobs.map((j) => ({ startedAt: j.startedAt!, finishedAt: j.finishedAt! })),
    ),
  };
}

/**
 * How long a study queued now waits before its grading starts: the jobs ahead of it (waiting and
 * running) times the recent grading time per study. Null when Redis does not answer or nothing was
 * graded yet.
 */
function expectedWait(
  grade: StatusReport["queues"][QueueName],
  secondsPerStudy: number | null,
): StatusReport["wait"] {
  if ("error" in grade) return { studiesAhead: null, secondsPerStudy, seconds: null };
  const studiesAhead = grade.waiting + grade.active;
  const seconds = secondsPerStudy === null ? null : studiesAhead * secondsPerStudy;
  return { studiesAhead, secondsPerStudy, seconds };
}

/** What came in: studies, instances, refusals, skipped studies, deliveries, recent studies. */
async function intakeFigures(db: Db, recent: number) {
  const [studies, routing, resent, skipped, deliveries, recentStudies, refusals] =
    await Promise.all([
      db.study.groupBy({ by: ["status"], _count: { _all: true } }),
      db.instance.groupBy({ by: ["routing"], _count: { _all: true } }),
      db.instance.aggregate({ _sum: { duplicateCount: true } }),
      db.study.groupBy({
        by: ["statusReason"],
        where: { status: "REFUSED" },
        _count: { _all: true },
      }),
      db.delivery.groupBy({ by: ["channel", "status"], _count: { _all: true } }),
      db.study.findMany({
        orderBy: { lastReceivedAt: "desc" },
        take: recent,
        include: {
          jobs: {
            select: { jobId: true, revision: true, status: true },
            orderBy: { revision: "asc" },
          },
          instances: { select: { routing: true } },
        },
      }),
      db.auditEvent.groupBy({
        by: ["event"],
        where: { event: { in: ["instance.refused", "association.rejected"] } },
        _count: { _all: true },
      }),
    ]);
  const byEvent = countBy(refusals.map((r) => ({ key: r.event, n: r._count._all })));
  const byRouting = countBy(routing.map((r) => ({ key: r.routing, n: r._count._all })));
  const byStudyStatus = countBy(studies.map((s) => ({ key: s.status, n: s._count._all })));
  return {
    studies: {
      total: Object.values(byStudyStatus).reduce((a, b) => a + b, 0),
      byStatus: byStudyStatus,
    },
    instances: {
      received: (byRouting.KNEE ?? 0) + (byRouting.NOT_KNEE ?? 0),
      knee: byRouting.KNEE ?? 0,
      notKnee: byRouting.NOT_KNEE ?? 0,
      resent: resent._sum.duplicateCount ?? 0,
      refused: byEvent["instance.refused"] ?? 0,
    },
    associations: { rejected: byEvent["association.rejected"] ?? 0 },
    skipped: skipped.map((s) => ({ reason: s.statusReason ?? "unknown", studies: s._count._all })),
    deliveries: deliveriesOf(deliveries),
    recentStudies: recentStudies.map((s) => ({
      studyInstanceUid: s.studyInstanceUid,
      status: s.status,
      revision: s.revision,
      instances: s.instances.length,
      kneeInstances: s.instances.filter((i) => i.routing === "KNEE").length,
      lastReceivedAt: s.lastReceivedAt.toISOString(),
      statusReason: s.statusReason,
      jobs: s.jobs,
    })),
  };
}

function deliveriesOf(
  rows: { channel: string; status: string; _count: { _all: number } }[],
): StatusReport["deliveries"] {
  return {
    byStatus: rows.reduce<Record<string, number>>((acc, d) => {
      acc[d.status] = (acc[d.status] ?? 0) + d._count._all;
      return acc;
    }, {}),
    byChannel: rows.reduce<Record<string, Record<string, number>>>((acc, d) => {
      acc[d.channel] = { ...acc[d.channel], [d.status]: d._count._all };
      return acc;
    }, {}),
  };
}

/** Each queue's jobs per state, or why Redis could not say. */
async function queueCounts(config: Config): Promise<StatusReport["queues"]> {
  const queues = {} as StatusReport["queues"];
  for (const name of Object.values(QUEUES)) {
    const queue = createQueue(name, config);
    try {
      const counts = await queue.getJobCounts(...JOB_STATES);
      queues[name] = Object.fromEntries(JOB_STATES.map((s) => [s, counts[s] ?? 0])) as JobCounts;
    } catch (error) {
      queues[name] = { error: (error as Error).message };
    } finally {
      await queue.close();
    }
  }
  return queues;
}

async function reviewFigures(db: Db, config: Config): Promise<StatusReport["review"]> {
  const [agreement, awaiting, signed] = await Promise.all([
    agreementReport(db, config),
    db.gradingJob.count({
      where: { status: "COMPLETED", results: { some: {} }, reviews: { none: {} } },
    }),
    db.gradingJob.count({ where: { reviews: { some: {} } } }),
  ]);
  return { awaiting, signed, agreement };
}

function warningsOf(
  outputs: StatusReport["outputs"],
  agreement: AgreementReport,
  queues: StatusReport["queues"],
  grading: { expectedInRedis: number; unqueueable: number },
): string[] {
  const warnings: string[] = [];
  for (const o of Object.values(outputs)) {
    if (!o.reachable) warnings.push(`${o.error}: results wait in the outbox and are retried`);
  }
  if (agreement.warning) warnings.push(`Review agreement: ${agreement.warning}`);
  const grade = queues[QUEUES.gradeStudy];
  if ("error" in grade) {
    warnings.push(`Redis unavailable: ${grade.error}`);
  } else {
    const inRedis = grade.waiting + grade.active + grade.delayed;
    if (grading.expectedInRedis > inRedis) {
      warnings.push(
        `PostgreSQL has ${grading.expectedInRedis} grading job(s) queued or running but Redis holds ${inRedis}: jobs were lost (Redis restarted without AOF, failed over or flushed?); the listener's reconciler adds them again within a minute`,
      );
    }
  }
  if (grading.unqueueable > 0) {
    warnings.push(
      `${grading.unqueueable} grading job(s) could not be queued (INVALID_JOB): see the studies marked FAILED`,
    );
  }
  return warnings;
}

export function formatStatus(s: StatusReport): string {
  const lines = [
    `kneegrade status at ${s.generatedAt}`,
    ...s.warnings.map((w) => `WARNING: ${w}`),
    "",
    `Studies: ${s.studies.total}  ${fmtCounts(s.studies.byStatus)}`,
    `Instances received: ${s.instances.received} (knee ${s.instances.knee}, not knee ${s.instances.notKnee}, resent ${s.instances.resent}); refused ${s.instances.refused}`,
    `Associations rejected: ${s.associations.rejected}`,
    "Skipped studies:",
    ...(s.skipped.length ? s.skipped.map((k) => `  ${k.studies} × ${k.reason}`) : ["  none"]),
    "Queues:",
    ...Object.entries(s.queues).map(
      ([name, c]) =>
        `  ${name.padEnd(14)} ${"error" in c ? `unavailable: ${c.error}` : fmtCounts(c)}`,
    ),
    `Grading jobs: ${fmtCounts(s.jobs.byStatus)}`,
    `Expected wait: ${waitLine(s.wait)}`,
    `Graded: ${s.grading.studies.graded} studies, ${s.grading.knees} knees; refused ${s.grading.studies.refused}; failed ${s.grading.studies.failed}  (instances: ${fmtCounts(s.grading.instances)})`,
    ...(s.grading.lastModel
      ? [
          `Model: ${s.grading.lastModel.version} (status ${s.grading.lastModel.status}; providers ${JSON.stringify(s.grading.lastModel.providers)})`,
        ]
      : []),
    `Deliveries: ${fmtCounts(s.deliveries.byStatus)}${
      Object.keys(s.deliveries.byChannel).some((c) => c !== "DICOM")
        ? ` (${Object.entries(s.deliveries.byChannel)
            .map(([c, n]) => `${c === "DICOM" ? "PACS" : c} ${fmtCounts(n)}`)
            .join("; ")})`
        : ""
    }${
      (s.deliveries.byStatus.FAILED ?? 0) > 0
        ? "  (FAILED = dead letter after the last attempt: `kneegrade redeliver <study>`)"
        : ""
    }`,
    ...Object.entries(s.outputs).map(
      ([name, o]) =>
        `${name.toUpperCase()} output: ${o.target} ${o.reachable ? "answers" : `does not answer (${o.error})`}`,
    ),
    `Review: ${s.review.awaiting} awaiting, ${s.review.signed} signed; agreement over ${s.review.agreement.windowDays} days: ${agreementLine(s.review.agreement)}`,
    "Recent studies:",
    ...(s.recentStudies.length
      ? s.recentStudies.map(
          (r) =>
            `  ${r.studyInstanceUid}  ${r.status} r${r.revision}  ${r.kneeInstances}/${r.instances} knee` +
            (r.statusReason ? `  (${r.statusReason})` : ""),
        )
      : ["  none"]),
  ];
  return lines.join("\n");
}

function waitLine(w: StatusReport["wait"]): string {
  if (w.studiesAhead === null) return "unknown (Redis unavailable)";
  if (w.seconds === null || w.secondsPerStudy === null) {
    return `${w.studiesAhead} studies ahead; no study graded yet to time`;
  }
  return `${formatSeconds(w.seconds)} (${w.studiesAhead} studies ahead × ${w.secondsPerStudy.toFixed(1)} s per study recently)`;
}

function formatSeconds(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function agreementLine(a: AgreementReport): string {
  if (a.exact === null) return "no signed knee yet";
  const pct = (v: number | null) => `${((v ?? 0) * 100).toFixed(1)} %`;
  return `${a.knees} knees, exact ${pct(a.exact)}, within one ${pct(a.withinOne)}, QWK ${(a.qwk ?? 0).toFixed(3)}`;
}

function fmtCounts(counts: Record<string, number>): string {
  const entries = Object.entries(counts);
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(" ") : "none";
}
