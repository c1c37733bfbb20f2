/**
 * The report reconciler on the real PostgreSQL and Redis: a graded study revision whose
 * `report-study` job Redis lost is added again, once; reported, superseded, dead-lettered and
 * just-finished revisions are left alone.
 */
import { QUEUES, studyRevisionJobId } from "@kneegrade/contracts";
import { createDb, type Db } from "@kneegrade/db";
import { createQueue } from "@kneegrade/queue";
import type { Queue } from "bullmq";
import { afterAll, beforeAll, expect, it } from "vitest";
import { cleanupConfig, resetDb, testConfig } from "../../../tests/helpers/env.ts";
import { newUid } from "../../../tests/helpers/studies.ts";
import { reconcileReportJobs } from "./reconcile.ts";

let db: Db;
let queue: Queue;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  const config = await testConfig();
  db = createDb(config.DATABASE_URL);
  await resetDb(db);
  queue = createQueue(QUEUES.reportStudy, config);
  cleanup = async () => {
    await queue.close();
    await db.$disconnect();
    await cleanupConfig(config);
  };
});
afterAll(() => cleanup());

const minuteAgo = () => new Date(Date.now() - 60_000);

/** A study at `status` and revision `studyRevision`, with a completed grading job of `revision`. */
async function graded(
  status: "GRADED" | "REPORTED",
  o: { revision?: number; studyRevision?: number; finishedAt?: Date } = {},
) {
  const uid = newUid();
  const revision = o.revision ?? 1;
  const study = await db.study.create({
    data: { studyInstanceUid: uid, status, revision: o.studyRevision ?? revision },
  });
  const job = await db.gradingJob.create({
    data: {
      jobId: studyRevisionJobId(QUEUES.gradeStudy, uid, revision),
      queue: QUEUES.gradeStudy,
      studyId: study.id,
      revision,
      status: "COMPLETED",
      finishedAt: o.finishedAt ?? minuteAgo(),
    },
  });
  return { uid, study, job, reportJobId: studyRevisionJobId(QUEUES.reportStudy, uid, revision) };
}

it("adds a lost report job again, once, and leaves the others alone", async () => {
  const lost = await graded("GRADED");
  const reported = await graded("REPORTED");
  const superseded = await graded("GRADED", { revision: 1, studyRevision: 2 });
  const recent = await graded("GRADED", { finishedAt: new Date() });
  const deadLettered = await graded("GRADED");
  const report = await db.report.create({
    data: {
      studyId: deadLettered.study.id,
      gradingJobId: deadLettered.job.id,
      sopInstanceUid: newUid(),
      seriesInstanceUid: newUid(),
      sopClassUid: "1.2.840.10008.5.1.4.1.1.88.33",
      path: "x.dcm",
      sha256: "0".repeat(64),
    },
  });
  await db.delivery.create({
    data: {
      reportId: report.id,
      destinationAet: "PACS",
      host: "127.0.0.1",
      port: 104,
      status: "FAILED",
    },
  });

  expect(await reconcileReportJobs(db, queue)).toEqual([lost.reportJobId]);
  const job = await queue.getJob(lost.reportJobId);
  expect(job?.data).toEqual({
    schemaVersion: 1,
    studyId: lost.study.id,
    studyInstanceUid: lost.uid,
    revision: 1,
    gradingJobId: lost.job.id,
  });
  const audit = await db.auditEvent.findMany({ where: { event: "report.requeued" } });
  expect(audit.map((a) => a.studyInstanceUid)).toEqual([lost.uid]);
  for (const other of [reported, superseded, recent, deadLettered]) {
    expect(await queue.getJob(other.reportJobId)).toBeUndefined();
  }
  // The job is there now: a second round adds nothing.
  expect(await reconcileReportJobs(db, queue)).toEqual([]);
});
