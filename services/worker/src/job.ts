/**
 * One `grade-study` job: grade every knee instance of one study revision and record it all in one
 * transaction, then hand the revision to the reporter (`report-study`).
 *
 * Idempotent: a revision already COMPLETED is not graded again (only its report job is re-added,
 * which BullMQ ignores when it exists). Per-instance problems (no knee, corrupt pixels) are outcomes,
 * recorded with a code and reason; only transient trouble (database, Redis, the runtime) throws, so
 * BullMQ retries the job with backoff. After the last attempt `recordFinalFailure` marks the job and
 * the study FAILED with the reason: nothing is dropped silently.
 */
import { readFile } from "node:fs/promises";
import { GradeStudyJob, QUEUES, ReportStudyJob, studyRevisionJobId } from "@kneegrade/contracts";
import type { Db, Prisma } from "@kneegrade/db";
import {
  cropPng,
  type GradedKnee,
  gradeDicom,
  gradePrepared,
  heatmapPng,
  type InstanceResult,
  type KneePredictor,
  kneeRegion,
  type NotGradedKnee,
} from "@kneegrade/grading";
import type { Logger } from "@kneegrade/log";
import type { Metrics } from "@kneegrade/ops";
import { UnrecoverableError } from "bullmq";
import type { PreparePool } from "./prepare-pool.ts";

export interface JobContext {
  db: Db;
  predictor: KneePredictor;
  /** Model identity, recorded with every result. */
  model: { version: string; status: string; providers: Record<string, string> };
  /** Adds the report job (BullMQ `Queue.add`). */
  addReportJob(payload: ReportStudyJob, jobId: string): Promise<unknown>;
  log: Logger;
  /** Stage times and outcomes per radiograph, when the process serves metrics. */
  metrics?: Metrics;
  /**
   * Reads and prepares a spooled radiograph in a preparation thread (WORKER_PREPARE_THREADS);
   * absent: read and prepared on this thread, one instance after another.
   */
  prepare?: PreparePool["prepare"];
}

const LATERALITY = { R: "RIGHT", L: "LEFT", U: "UNKNOWN" } as const;

export interface JobSummary {
  gradingJobId: string;
  skipped: boolean;
  instances: number;
  knees: number;
  outcome: "GRADED" | "REFUSED" | "FAILED";
}

/** One knee instance's grading, as the job records it. */
interface GradedInstance {
  instanceId: string;
  sopInstanceUid: string;
  result: InstanceResult;
  readMs: number;
}

type StudyOutcome = JobSummary["outcome"];

/**
 * A `grade-study` job, top to bottom: check the payload and its grading job, grade each knee
 * instance of the study revision, record everything in one transaction, queue the report.
 */
export async function processGradeJob(
  data: unknown,
  attempt: number,
  ctx: JobContext,
): Promise<JobSummary> {
  const job = parsePayload(data);
  const recorded = await findGradingJob(ctx.db, job);
  if (recorded.completed) {
    // Graded by an earlier attempt that stopped before the report job was added.
    await queueReport(ctx, job, recorded.id);
    return {
      gradingJobId: recorded.id,
      skipped: true,
      instances: 0,
      knees: 0,
      outcome: "GRADED",
    };
  }
  await markGrading(ctx.db, job, recorded.id, attempt);
  const instances = await kneeInstances(ctx.db, job);
  const graded: GradedInstance[] = [];
  if (ctx.prepare) {
    // The threads take them in this order; each instance's knees go to the ensemble as soon as
    // they are ready, so one study's instances overlap too.
    graded.push(...(await Promise.all(instances.map((i) => gradeInstance(i, job, ctx)))));
  } else {
    for (const instance of instances) graded.push(await gradeInstance(instance, job, ctx));
  }
  // The pictures are encoded by sharp off this thread, all of the study's at once.
  const kneeRows = (await Promise.all(graded.map((g) => kneeRowsOf(g, recorded.id, ctx)))).flat();
  const outcome = studyOutcome(graded, kneeRows.length);
  await recordResults(ctx, job, recorded.id, graded, kneeRows, outcome);
  await queueReport(ctx, job, recorded.id);
  return {
    gradingJobId: recorded.id,
    skipped: false,
    instances: graded.length,
    knees: kneeRows.length,
    outcome,
  };
}

function parsePayload(data: unknown): GradeStudyJob {
  const parsed = GradeStudyJob.safeParse(data);
  if (!parsed.success) {
    throw new UnrecoverableError(`invalid grade-study payload: ${parsed.error.issues[0]?.message}`);
  }
  return parsed.data;
}

/** The grading job the listener recorded for this study revision (none: the job is invalid). */
async function findGradingJob(db: Db, job: GradeStudyJob) {
  const gradingJob = await db.gradingJob.findUnique({
    where: { studyId_revision: { studyId: job.studyId, revision: job.revision } },
  });
  if (!gradingJob) {
    throw new UnrecoverableError(
      `no grading job recorded for study ${job.studyInstanceUid} revision ${job.revision}`,
    );
  }
  return { id: gradingJob.id, completed: gradingJob.status === "COMPLETED" };
}

/** Adds the study revision's `report-study` job (one per revision: its id is deterministic). */
async function queueReport(ctx: JobContext, job: GradeStudyJob, gradingJobId: string) {
  const payload = ReportStudyJob.parse({
    schemaVersion: 1,
    studyId: job.studyId,
    studyInstanceUid: job.studyInstanceUid,
    revision: job.revision,
    gradingJobId,
  });
  await ctx.addReportJob(
    payload,
    studyRevisionJobId(QUEUES.reportStudy, job.studyInstanceUid, job.revision),
  );
}

async function markGrading(db: Db, job: GradeStudyJob, gradingJobId: string, attempt: number) {
  await db.$transaction([
    db.gradingJob.update({
      where: { id: gradingJobId },
      data: { status: "ACTIVE", startedAt: new Date(), attempts: attempt },
    }),
    db.study.updateMany({
      where: { id: job.studyId, revision: job.revision },
      data: { status: "GRADING" },
    }),
  ]);
}

/** The study's knee instances up to this revision, in the order they arrived. */
function kneeInstances(db: Db, job: GradeStudyJob) {
  return db.instance.findMany({
    where: { studyId: job.studyId, routing: "KNEE", revision: { lte: job.revision } },
    orderBy: { receivedAt: "asc" },
  });
}

type KneeInstance = Awaited<ReturnType<typeof kneeInstances>>[number];

/** The spooled file's bytes; null when it is gone (other disk errors are thrown: retry the job). */
async function readSpooled(instance: KneeInstance): Promise<Uint8Array | null> {
  if (!instance.spoolPath) return null;
  try {
    const bytes = await readFile(instance.spoolPath);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/** A spooled file that is gone: recorded as the instance's failure, not measured. */
const missingSpoolFile = (): InstanceResult => ({
  outcome: "FAILED",
  code: "UNREADABLE_DICOM",
  reason: "the spooled file is missing (SPOOL_DIR changed or cleaned?)",
  warnings: [],
  timingsMs: { decode: 0, localise: 0, predict: 0 },
});

/** Reads and grades a spooled instance, on this thread or a preparation thread; null: missing. */
async function readAndGrade(
  instance: KneeInstance,
  ctx: JobContext,
): Promise<{ result: InstanceResult; readMs: number } | null> {
  if (ctx.prepare && instance.spoolPath) {
    const { prepared, readMs } = await ctx.prepare(instance.spoolPath);
    return prepared ? { result: await gradePrepared(prepared, ctx.predictor), readMs } : null;
  }
  const start = performance.now();
  const bytes = await readSpooled(instance);
  if (!bytes) return null;
  const readMs = performance.now() - start;
  return { result: await gradeDicom(bytes, ctx.predictor), readMs };
}

/** Reads and grades one spooled instance; logs and measures the outcome. */
async function gradeInstance(
  instance: KneeInstance,
  job: GradeStudyJob,
  ctx: JobContext,
): Promise<GradedInstance> {
  const ids = { instanceId: instance.id, sopInstanceUid: instance.sopInstanceUid };
  const read = await readAndGrade(instance, ctx);
  if (!read) return { ...ids, readMs: 0, result: missingSpoolFile() };
  const { result, readMs } = read;
  if (ctx.metrics) observeGrading(ctx.metrics, result, readMs);
  ctx.log.info(
    {
      event: "instance.graded",
      studyInstanceUid: job.studyInstanceUid,
      sopInstanceUid: instance.sopInstanceUid,
      outcome: result.outcome,
      ...(result.outcome === "GRADED"
        ? {
            knees: result.knees.map((k) => ({
              laterality: k.laterality,
              grade: k.prediction.grade,
            })),
            notGraded: result.notGraded.map((k) => ({ laterality: k.laterality, code: k.code })),
          }
        : { code: result.code }),
      timingsMs: result.timingsMs,
    },
    `instance ${result.outcome.toLowerCase()}`,
  );
  return { ...ids, result, readMs };
}

async function kneeRowsOf(g: GradedInstance, gradingJobId: string, ctx: JobContext) {
  if (g.result.outcome !== "GRADED") return [];
  const { timingsMs } = g.result;
  return Promise.all(
    g.result.knees.map((knee) =>
      kneeRow(knee, g.instanceId, gradingJobId, ctx, timingsMs, g.readMs),
    ),
  );
}

/**
 * GRADED when a knee was graded or reported without a grade (arthroplasty: the reader is told
 * about it); otherwise REFUSED when an instance was refused, else FAILED.
 */
function studyOutcome(graded: GradedInstance[], knees: number): StudyOutcome {
  if (knees > 0 || graded.some((g) => g.result.outcome === "GRADED")) return "GRADED";
  return graded.some((g) => g.result.outcome === "REFUSED") ? "REFUSED" : "FAILED";
}

/** Why a study was not graded: each instance's code and reason. */
function statusReasonOf(graded: GradedInstance[], outcome: StudyOutcome): string | null {
  if (outcome === "GRADED") return null;
  return (
    graded
      .map((g) => (g.result.outcome === "GRADED" ? "" : `${g.result.code}: ${g.result.reason}`))
      .filter(Boolean)
      .join("; ") || "NO_KNEE_INSTANCE: no knee instance to grade"
  );
}

/** An instance's grading as its InstanceGrading row holds it. */
function instanceRow(g: GradedInstance, gradingJobId: string) {
  const r = g.result;
  return {
    gradingJobId,
    instanceId: g.instanceId,
    outcome: r.outcome,
    code: r.outcome === "GRADED" ? null : r.code,
    reason: r.outcome === "GRADED" ? null : r.reason,
    warnings: r.warnings,
    kneesFound: r.outcome === "GRADED" ? r.knees.length + r.notGraded.length : 0,
    notGraded: r.outcome === "GRADED" ? r.notGraded.map(notGradedRow) : [],
    timingsMs: { read: Math.round(g.readMs * 10) / 10, ...r.timingsMs },
  };
}

/** Everything the revision produced, in one transaction: results, job, study status, audit. */
async function recordResults(
  ctx: JobContext,
  job: GradeStudyJob,
  gradingJobId: string,
  graded: GradedInstance[],
  kneeRows: Prisma.KneeResultCreateManyInput[],
  outcome: StudyOutcome,
) {
  await ctx.db.$transaction(async (tx) => {
    // A retry after a crash mid-transaction finds nothing; a retry after a commit never gets here.
    await tx.kneeResult.deleteMany({ where: { gradingJobId } });
    await tx.instanceGrading.deleteMany({ where: { gradingJobId } });
    await tx.instanceGrading.createMany({ data: graded.map((g) => instanceRow(g, gradingJobId)) });
    if (kneeRows.length > 0) await tx.kneeResult.createMany({ data: kneeRows });
    await tx.gradingJob.update({
      where: { id: gradingJobId },
      data: {
        status: "COMPLETED",
        finishedAt: new Date(),
        modelVersion: ctx.model.version,
        modelStatus: ctx.model.status,
        providers: ctx.model.providers,
        errorCode: null,
        errorMessage: null,
      },
    });
    // Only the latest revision decides the study's status; an older one just records its results.
    await tx.study.updateMany({
      where: { id: job.studyId, revision: job.revision },
      data: {
        status: outcome === "GRADED" ? "GRADED" : outcome,
        statusReason: statusReasonOf(graded, outcome),
      },
    });
    await tx.auditEvent.create({
      data: {
        event: "study.graded",
        actor: "worker",
        studyInstanceUid: job.studyInstanceUid,
        details: {
          revision: job.revision,
          outcome,
          knees: kneeRows.length,
          instances: graded.length,
          modelVersion: ctx.model.version,
        },
      },
    });
  });
}

async function kneeRow(
  knee: GradedKnee,
  instanceId: string,
  gradingJobId: string,
  ctx: JobContext,
  timings: { decode: number; localise: number; predict: number },
  readMs: number,
): Promise<Prisma.KneeResultCreateManyInput> {
  const p = knee.prediction;
  return {
    gradingJobId,
    instanceId,
    laterality: LATERALITY[knee.laterality],
    lateralitySource: knee.lateralitySource,
    klGrade: p.grade,
    probabilities: p.probabilities,
    memberOutputs: p.members.map((m) => ({
      name: m.name,
      provider: m.provider,
      logits: m.logits,
      probabilities: m.probabilities,
    })),
    region: kneeRegion(knee),
    localisationScore: knee.score,
    lowConfidence: knee.lowConfidence,
    ...(await kneePictures(knee)),
    modelVersion: ctx.model.version,
    timingsMs: { read: Math.round(readMs * 10) / 10, ...timings },
  };
}

async function kneePictures(knee: GradedKnee) {
  const [crop, heatmap] = await Promise.all([cropPng(knee), heatmapPng(knee)]);
  return { cropPng: new Uint8Array(crop), heatmapPng: new Uint8Array(heatmap) };
}

/** A knee found but not graded, as InstanceGrading.notGraded holds it. */
function notGradedRow(knee: NotGradedKnee) {
  return {
    laterality: LATERALITY[knee.laterality],
    lateralitySource: knee.lateralitySource,
    code: knee.code,
    reason: knee.reason,
    region: kneeRegion(knee),
    localisationScore: knee.score,
    lowConfidence: knee.lowConfidence,
  };
}

/** After the last attempt (or an unrecoverable error): the job and the study say why they failed. */
export async function recordFinalFailure(db: Db, data: unknown, error: Error, log: Logger) {
  const parsed = GradeStudyJob.safeParse(data);
  if (!parsed.success) {
    log.error({ event: "job.failed", err: error }, "invalid grade-study job failed for good");
    return;
  }
  const job = parsed.data;
  const code = error instanceof UnrecoverableError ? "UNRECOVERABLE" : "RETRIES_EXHAUSTED";
  const message = error.message.slice(0, 1000);
  await db.$transaction([
    db.gradingJob.updateMany({
      where: { studyId: job.studyId, revision: job.revision, status: { not: "COMPLETED" } },
      data: { status: "FAILED", finishedAt: new Date(), errorCode: code, errorMessage: message },
    }),
    db.study.updateMany({
      where: { id: job.studyId, revision: job.revision },
      data: { status: "FAILED", statusReason: `${code}: ${message}` },
    }),
    db.auditEvent.create({
      data: {
        event: "study.grading-failed",
        actor: "worker",
        studyInstanceUid: job.studyInstanceUid,
        details: { revision: job.revision, code, message },
      },
    }),
  ]);
  log.error(
    {
      event: "job.failed",
      studyInstanceUid: job.studyInstanceUid,
      revision: job.revision,
      code,
      err: error,
    },
    "grading failed for good: the study is marked FAILED",
  );
}

/** A radiograph's stage times (seconds) and outcome into the process's metrics. */
function observeGrading(metrics: Metrics, result: InstanceResult, readMs: number): void {
  const stages = metrics.gradingStageSeconds;
  stages.observe({ stage: "read" }, readMs / 1000);
  stages.observe({ stage: "decode" }, result.timingsMs.decode / 1000);
  // A radiograph refused before localisation or inference did not go through that stage.
  if (result.timingsMs.localise > 0)
    stages.observe({ stage: "localise" }, result.timingsMs.localise / 1000);
  if (result.timingsMs.predict > 0)
    stages.observe({ stage: "inference" }, result.timingsMs.predict / 1000);
  metrics.instancesGraded.inc({ outcome: result.outcome });
  if (result.outcome === "GRADED") metrics.kneesGraded.inc(result.knees.length);
}
