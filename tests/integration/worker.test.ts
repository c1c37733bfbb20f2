/**
 * The worker service on real parts: DCMTK storescu sends full-size knee radiographs (composed from
 * real knee-kl crops) to the listener; the worker grades them with a test model exported by the
 * models/ toolkit, on the local PostgreSQL and Redis.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QUEUES } from "@kneegrade/contracts";
import { reportText, writeComprehensiveSr } from "@kneegrade/dicom-writers";
import { createLogger } from "@kneegrade/log";
import { createQueue } from "@kneegrade/queue";
import { buildReportInput } from "@kneegrade/report-jobs";
import {
  composeBilateral,
  composeRadiograph,
  radiographDicom,
} from "@kneegrade/sample-radiographs";
import { testModel } from "@kneegrade/test-models";
import { processGradeJob, type RunningWorker, startWorker } from "@kneegrade/worker";
import type { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { collectStatus } from "../../packages/cli/src/status.ts";
import { storescu } from "../helpers/dcmtk.ts";
import { activeGradingJob, closeAll, type Harness, startHarness, waitFor } from "../helpers/env.ts";
import { SHARED_DATA } from "../helpers/paths.ts";
import { newUid } from "../helpers/studies.ts";

const work = join(tmpdir(), `kneegrade-worker-test-${process.pid}`);
const VAL = `${SHARED_DATA}knee-kl/val/`;
const quiet = createLogger("test", "silent");

async function bilateralStudy(name: string, opts: { studyInstanceUid?: string } = {}) {
  const r = await composeBilateral([`${VAL}1/9003380R.png`, `${VAL}3/9107980R.png`]);
  const studyInstanceUid = opts.studyInstanceUid ?? newUid();
  const path = join(work, `${name}.dcm`);
  await writeFile(path, radiographDicom(r, { studyInstanceUid }));
  return { path, studyInstanceUid, truth: r.truth };
}

describe("worker (listener → grade-study → worker → report-study)", () => {
  let h: Harness;
  let modelDir: string;
  let reportQueue: Queue;
  let worker: RunningWorker | undefined;

  beforeAll(async () => {
    modelDir = await testModel("test");
    await mkdir(work, { recursive: true });
    h = await startHarness({
      STUDY_STABLE_SECONDS: "1",
      MODEL_DIR: modelDir,
      ALLOW_TEST_MODEL: "1",
      INFERENCE_THREADS: "2",
      JOB_ATTEMPTS: "2",
      JOB_BACKOFF_SECONDS: "0.2",
    });
    reportQueue = createQueue(QUEUES.reportStudy, h.config);
  }, 300_000);
  afterEach(async () => {
    await worker?.close();
    worker = undefined;
  });
  afterAll(async () => {
    await closeAll(reportQueue, h);
    await rm(work, { recursive: true, force: true });
  });

  const studyOf = (studyInstanceUid: string) =>
    h.db.study.findUnique({ where: { studyInstanceUid } });
  const waitForStudy = (uid: string, statuses: string[], timeoutMs = 30_000) =>
    waitFor(
      async () => {
        const s = await studyOf(uid);
        return s && statuses.includes(s.status) ? s : undefined;
      },
      timeoutMs,
      `study ${statuses.join("/")}`,
    );

  it("grades both knees of a bilateral radiograph, records everything, and queues its report", async () => {
    worker = await startWorker(h.config, h.db, quiet);
    expect(worker.model.ok).toBe(true);
    expect(worker.providers).toEqual({ tiny_a: "cpu", tiny_b: "cpu" });
    const study = await bilateralStudy("bilateral");
    const sent = await storescu(h.target, [study.path]);
    expect(sent.code, sent.stderr).toBe(0);
    const graded = await waitForStudy(study.studyInstanceUid, ["GRADED", "FAILED", "REFUSED"]);
    expect(graded.status).toBe("GRADED");

    const job = await h.db.gradingJob.findFirstOrThrow({
      where: { studyId: graded.id },
      include: { results: { orderBy: { laterality: "asc" } }, instances: true },
    });
    expect(job).toMatchObject({
      status: "COMPLETED",
      modelStatus: "smoke",
      providers: { tiny_a: "cpu", tiny_b: "cpu" },
    });
    expect(job.modelVersion).toMatch(/^smoke-[0-9a-f]{12}$/);
    expect(job.instances).toHaveLength(1);
    expect(job.instances[0]).toMatchObject({ outcome: "GRADED", kneesFound: 2, code: null });
    // PatientOrientation L\F: the knee on the image's left is the patient's right.
    expect(job.results.map((r) => r.laterality)).toEqual(["LEFT", "RIGHT"]);
    for (const r of job.results) {
      const p = r.probabilities as number[];
      expect(p).toHaveLength(5);
      expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      expect(r.klGrade).toBe(p.indexOf(Math.max(...p)));
      expect(r.memberOutputs).toHaveLength(2);
      expect(Buffer.from(r.cropPng!).subarray(1, 4).toString()).toBe("PNG");
      expect(Buffer.from(r.heatmapPng!).subarray(1, 4).toString()).toBe("PNG");
      expect(r.lateralitySource).toMatch(/PatientOrientation/);
      const region = r.region as { x: number; y: number; width: number };
      const truth = study.truth[r.laterality === "RIGHT" ? 0 : 1]!;
      const error = Math.hypot(
        region.x + region.width / 2 - truth.cx,
        region.y + region.width / 2 - truth.cy,
      );
      expect(error * 0.15).toBeLessThan(12); // mm
      expect(Object.keys(r.timingsMs as object).sort()).toEqual([
        "decode",
        "localise",
        "predict",
        "read",
      ]);
    }
    const reportJob = await reportQueue.getJob(`report-study_${study.studyInstanceUid}_r1`);
    expect(reportJob?.data).toMatchObject({
      studyInstanceUid: study.studyInstanceUid,
      revision: 1,
      gradingJobId: job.id,
    });
    const audit = await h.db.auditEvent.findFirst({
      where: { event: "study.graded", studyInstanceUid: study.studyInstanceUid },
    });
    expect(audit?.details).toMatchObject({ outcome: "GRADED", knees: 2 });

    // Processing the same revision again (a retry after a crash) changes nothing.
    const again = await processGradeJob(
      {
        schemaVersion: 1,
        studyId: graded.id,
        studyInstanceUid: study.studyInstanceUid,
        revision: 1,
      },
      2,
      {
        db: h.db,
        predictor: {
          inputSize: { height: 64, width: 64 },
          predict: () => Promise.reject(new Error("must not be called")),
        },
        model: { version: "x", status: "smoke", providers: {} },
        addReportJob: (payload, jobId) => reportQueue.add(QUEUES.reportStudy, payload, { jobId }),
        log: quiet,
      },
    );
    expect(again.skipped).toBe(true);
    expect(await h.db.kneeResult.count({ where: { gradingJobId: job.id } })).toBe(2);
    expect(await reportQueue.getJobCounts("waiting")).toMatchObject({ waiting: 1 });

    const status = await collectStatus(h.db, h.config);
    expect(status.grading.studies.graded).toBeGreaterThanOrEqual(1);
    expect(status.grading.knees).toBeGreaterThanOrEqual(2);
  }, 90_000);

  it("reports a knee arthroplasty without a grade and grades the other knee, through to the report", async () => {
    worker = await startWorker(h.config, h.db, quiet);
    const r = await composeRadiograph({
      widthMm: 360,
      heightMm: 300,
      spacingMm: 0.15,
      boneMax: 0.8,
      knees: [
        { png: `${VAL}2/9015402R.png`, xMm: 95, yMm: 150, sideMm: 90, implant: true },
        { png: `${VAL}1/9003380R.png`, xMm: 265, yMm: 150, sideMm: 90 },
      ],
    });
    const studyInstanceUid = newUid();
    const path = join(work, "arthroplasty.dcm");
    await writeFile(path, radiographDicom(r, { studyInstanceUid }));
    const sent = await storescu(h.target, [path]);
    expect(sent.code, sent.stderr).toBe(0);
    const graded = await waitForStudy(studyInstanceUid, ["GRADED", "FAILED", "REFUSED"]);
    expect(graded.status).toBe("GRADED");
    const job = await h.db.gradingJob.findFirstOrThrow({
      where: { studyId: graded.id },
      include: { results: true, instances: true },
    });
    // PatientOrientation L\F: the image's left knee, the one with the prosthesis, is the right.
    expect(job.results.map((x) => x.laterality)).toEqual(["LEFT"]);
    expect(job.instances[0]).toMatchObject({ outcome: "GRADED", kneesFound: 2 });
    expect(job.instances[0]!.notGraded).toMatchObject([
      { laterality: "RIGHT", code: "ARTHROPLASTY", reason: "knee arthroplasty — not graded" },
    ]);
    const input = await buildReportInput(h.db, job.id, h.config);
    const text = reportText(input);
    expect(text.findings).toContain("Right knee: knee arthroplasty — not graded.");
    expect(text.findings).toMatch(/^Left knee: Kellgren–Lawrence grade \d/m);
    expect(text.findings).not.toMatch(/^Right knee: Kellgren/m);
    const sr = Buffer.from(writeComprehensiveSr(input)).toString("latin1");
    expect(sr).toContain("1 knee not graded (arthroplasty)");
  });

  it("records a refused radiograph and a corrupt one with their reasons, without failing the job", async () => {
    const studyInstanceUid = newUid();
    const r = await composeRadiograph({
      widthMm: 200,
      heightMm: 250,
      spacingMm: 0.2,
      knees: [{ png: `${VAL}2/9023348R.png`, xMm: 100, yMm: 125, sideMm: 90 }],
    });
    const lateral = join(work, "lateral.dcm");
    await writeFile(
      lateral,
      radiographDicom(r, { studyInstanceUid, viewPosition: "LL", imageLaterality: "R" }),
    );
    const corrupt = join(work, "corrupt.dcm");
    await writeFile(corrupt, radiographDicom(r, { studyInstanceUid, imageLaterality: "R" }));
    const sent = await storescu(h.target, [lateral, corrupt]);
    expect(sent.code, sent.stderr).toBe(0);
    // Cut the spooled copy of the second one short, as a failing disk would.
    const spooled = await waitFor(async () => {
      const i = await h.db.instance.findMany({ where: { study: { studyInstanceUid } } });
      return i.length === 2 ? i : undefined;
    });
    const victim = spooled.find((i) => i.viewPosition !== "LL")!;
    const bytes = await readFile(victim.spoolPath!);
    await writeFile(victim.spoolPath!, bytes.subarray(0, bytes.length - 200_000));
    worker = await startWorker(h.config, h.db, quiet);

    const done = await waitForStudy(studyInstanceUid, ["GRADED", "FAILED", "REFUSED"]);
    expect(done.status).toBe("REFUSED");
    expect(done.statusReason).toMatch(/NOT_AP_VIEW/);
    const outcomes = await h.db.instanceGrading.findMany({
      where: { instance: { study: { studyInstanceUid } } },
      include: { instance: true },
    });
    const byView = Object.fromEntries(outcomes.map((o) => [o.instance.viewPosition, o]));
    expect(byView.LL).toMatchObject({ outcome: "REFUSED", code: "NOT_AP_VIEW" });
    expect(byView.AP).toMatchObject({ outcome: "FAILED", code: "CORRUPT_PIXEL_DATA" });
    expect(byView.AP?.reason?.length).toBeGreaterThan(10);
    // A refused study still gets its report (saying why nothing was graded).
    expect(await reportQueue.getJob(`report-study_${studyInstanceUid}_r1`)).toBeDefined();
  }, 90_000);

  it("retries a job that fails, then records the failure with its reason: nothing is dropped", async () => {
    const study = await bilateralStudy("unreadable");
    const sent = await storescu(h.target, [study.path]);
    expect(sent.code, sent.stderr).toBe(0);
    const instance = await waitFor(
      async () =>
        (await h.db.instance.findFirst({
          where: { study: { studyInstanceUid: study.studyInstanceUid } },
        })) ?? undefined,
    );
    // A directory where the spooled file should be: reading it fails with EISDIR, not "missing".
    await rm(instance.spoolPath!);
    await mkdir(instance.spoolPath!);
    worker = await startWorker(h.config, h.db, quiet);
    const failed = await waitForStudy(study.studyInstanceUid, ["FAILED", "GRADED"]);
    expect(failed.status).toBe("FAILED");
    expect(failed.statusReason).toMatch(/^RETRIES_EXHAUSTED: .*EISDIR/);
    const job = await h.db.gradingJob.findFirstOrThrow({ where: { studyId: failed.id } });
    expect(job).toMatchObject({ status: "FAILED", errorCode: "RETRIES_EXHAUSTED", attempts: 2 });
    const audit = await h.db.auditEvent.findFirst({
      where: { event: "study.grading-failed", studyInstanceUid: study.studyInstanceUid },
    });
    expect(audit).not.toBeNull();
    const status = await collectStatus(h.db, h.config);
    expect(status.grading.studies.failed).toBeGreaterThanOrEqual(1);
  }, 90_000);

  it("lets a running job finish when it is closed (SIGTERM), and takes no job without a model", async () => {
    worker = await startWorker(h.config, h.db, quiet);
    const study = await bilateralStudy("shutdown");
    await storescu(h.target, [study.path]);
    const active = await activeGradingJob(h.db, study.studyInstanceUid, 30_000);
    await worker.close();
    worker = undefined;
    const after = await h.db.gradingJob.findUniqueOrThrow({ where: { id: active.id } });
    expect(after.status).toBe("COMPLETED");

    const none = await startWorker({ ...h.config, MODEL_DIR: join(work, "no-model") }, h.db, quiet);
    expect(none.model).toMatchObject({ ok: false, code: "MODEL_MISSING" });
    const waiting = await bilateralStudy("waiting");
    await storescu(h.target, [waiting.path]);
    await waitForStudy(waiting.studyInstanceUid, ["QUEUED"]);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await studyOf(waiting.studyInstanceUid))?.status).toBe("QUEUED");
    await none.close();
  }, 90_000);
});
