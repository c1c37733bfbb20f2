/** The outbox against the real PostgreSQL and Redis: a job recorded once is enqueued once. */
import { randomUUID } from "node:crypto";
import { QUEUES, studyRevisionJobId } from "@kneegrade/contracts";
import { createDb } from "@kneegrade/db";
import { createQueue } from "@kneegrade/queue";
import { afterAll, expect, it } from "vitest";
import { cleanupConfig, resetDb, testConfig } from "../../../tests/helpers/env.ts";
import { assembleStableStudies, enqueuePendingJobs } from "./assembler.ts";

const config = await testConfig();
const db = createDb(config.DATABASE_URL);
const queue = createQueue(QUEUES.gradeStudy, config);
afterAll(async () => {
  await queue.close();
  await db.$disconnect();
  await cleanupConfig(config);
});

it("assembles a stable study once and enqueues its job once, even when run again", async () => {
  await resetDb(db);
  const uid = `2.25.${Date.now()}`;
  const study = await db.study.create({
    data: { studyInstanceUid: uid, lastReceivedAt: new Date(Date.now() - 60_000) },
  });
  const series = await db.series.create({
    data: { seriesInstanceUid: `${uid}.1`, studyId: study.id },
  });
  await db.instance.create({
    data: {
      sopInstanceUid: `${uid}.1.1`,
      sopClassUid: "1.2.840.10008.5.1.4.1.1.1",
      studyId: study.id,
      seriesId: series.id,
      transferSyntaxUid: "1.2.840.10008.1.2.1",
      spoolPath: "/nonexistent",
      digest: `blake3:${randomUUID()}`,
      sizeBytes: 1n,
      callingAet: "TEST",
      revision: 1,
      routing: "KNEE",
      routingReason: "test",
    },
  });
  // Not stable yet with a 120 s quiet period.
  expect((await assembleStableStudies(db, 120)).queued).toEqual([]);

  const first = await assembleStableStudies(db, 10);
  expect(first.queued).toEqual([{ studyInstanceUid: uid, revision: 1 }]);
  expect((await assembleStableStudies(db, 10)).queued).toEqual([]);

  expect(await enqueuePendingJobs(db, queue)).toBe(1);
  expect(await enqueuePendingJobs(db, queue)).toBe(0);
  // A crash after `add` but before the outbox row was marked: the re-add is a no-op in BullMQ.
  await db.gradingJob.updateMany({ data: { enqueuedAt: null } });
  expect(await enqueuePendingJobs(db, queue)).toBe(1);

  const jobId = studyRevisionJobId(QUEUES.gradeStudy, uid, 1);
  expect((await queue.getJob(jobId))?.data).toMatchObject({ studyInstanceUid: uid, revision: 1 });
  expect(await queue.getJobCountByTypes("waiting")).toBe(1);
});
