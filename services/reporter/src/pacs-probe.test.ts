/**
 * The PACS probe with a real Orthanc as the PACS, stopped and started again on its port, and the
 * real PostgreSQL and Redis: a report that failed while the PACS was down goes within the probe
 * interval of the PACS's return, not at its next retry; the probe sends C-ECHO only while a report
 * waits on the PACS, one at a time, and releases reports only after it saw the PACS not answer.
 */
import type { Config } from "@kneegrade/config";
import { QUEUES, studyRevisionJobId } from "@kneegrade/contracts";
import { createDb, type Db } from "@kneegrade/db";
import { cEcho } from "@kneegrade/dicom";
import { createQueue } from "@kneegrade/queue";
import type { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  capturingLogger,
  cleanupConfig,
  resetDb,
  testConfig,
  waitFor,
} from "../../../tests/helpers/env.ts";
import {
  type GradedStudy,
  seedGradedStudy as seedGraded,
} from "../../../tests/helpers/graded-study.ts";
import { type RunningOrthanc, startOrthanc } from "../../../tests/helpers/orthanc.ts";
import { newUid } from "../../../tests/helpers/studies.ts";
import { pacsPeer, type RunningReporter, startReporter } from "./index.ts";
import { startPacsProbe } from "./pacs-probe.ts";

const PATIENT = { name: "Probe^Patricia", id: "MRN-PROBE-7" };
const PROBE_SECONDS = 2;
const BACKOFF_SECONDS = 3;
const logLines: string[] = [];
const log = capturingLogger(logLines);

/** A study graded as the worker records it (right knee KL 2, left KL 3), with the patient's data. */
function seedGradedStudy(db: Db, config: Config) {
  return seedGraded(db, config, {
    header: {
      StudyDate: "20261207",
      StudyTime: "101500",
      AccessionNumber: "ACC-PROBE",
      PatientName: PATIENT.name,
      PatientID: PATIENT.id,
    },
  });
}

type Seeded = GradedStudy;

const reportJob = (queue: Queue, s: Seeded, delay?: number) =>
  queue.add(
    QUEUES.reportStudy,
    { schemaVersion: 1, ...s, revision: 1 },
    { jobId: studyRevisionJobId(QUEUES.reportStudy, s.studyInstanceUid, 1), delay },
  );

describe("the PACS probe", () => {
  let orthanc: RunningOrthanc | undefined;
  let dicomPort: number;
  let config: Config;
  let db: Db;
  let queue: Queue;
  let reporter: RunningReporter | undefined;

  beforeAll(async () => {
    orthanc = await startOrthanc("ORTHANC");
    dicomPort = orthanc.dicomPort;
    config = await testConfig({
      PACS_PORT: String(dicomPort),
      PACS_AET: "ORTHANC",
      DIMSE_TIMEOUT_SECONDS: "3",
      DELIVERY_BACKOFF_SECONDS: String(BACKOFF_SECONDS),
      PACS_PROBE_SECONDS: String(PROBE_SECONDS),
      REPORT_SECONDARY_CAPTURE: "0",
      LOG_LEVEL: "debug",
    });
    db = createDb(config.DATABASE_URL);
    await resetDb(db);
    queue = createQueue(QUEUES.reportStudy, config);
  }, 60_000);

  afterAll(async () => {
    await reporter?.close();
    await queue?.close();
    await db?.$disconnect();
    await orthanc?.stop();
    if (config) await cleanupConfig(config);
  });

  const pacsDown = async () => {
    await orthanc?.stop();
    orthanc = undefined;
  };
  const pacsBack = async () => {
    orthanc = await startOrthanc("ORTHANC", { dicomPort });
  };
  const dicomDelivery = (gradingJobId: string) =>
    db.delivery.findFirst({ where: { channel: "DICOM", report: { gradingJobId } } });
  type Channel = "DICOM" | "FHIR";
  /** A report of `s` whose delivery on `pending` failed once; those on its other channels were sent. */
  const seedReport = (
    s: Seeded,
    pending: Channel,
    channels: readonly Channel[] = ["DICOM", "FHIR"],
  ) =>
    db.report.create({
      data: {
        studyId: s.studyId,
        gradingJobId: s.gradingJobId,
        sopInstanceUid: newUid(),
        seriesInstanceUid: newUid(),
        sopClassUid: "1.2.840.10008.5.1.4.1.1.88.33",
        path: "/nonexistent",
        sha256: "0".repeat(64),
        deliveries: {
          create: channels.map((channel) => ({
            channel,
            destinationAet: channel === "DICOM" ? "ORTHANC" : "FHIR",
            host: "127.0.0.1",
            port: dicomPort,
            attempts: 1,
            status: channel === pending ? ("PENDING" as const) : ("SENT" as const),
          })),
        },
      },
    });

  it("delivers a report within the probe interval of the PACS's return, not at its next retry", async () => {
    reporter = await startReporter(config, db, log);
    expect(reporter.pacsReachable).toBe(true);
    await pacsDown();
    const s = await seedGradedStudy(db, config);
    await reportJob(queue, s);
    // Attempts at 0, 3, 9 and 21 s fail; the fifth is due 24 s after the fourth.
    const failed = await waitFor(
      async () => {
        const d = await dicomDelivery(s.gradingJobId);
        return d && d.attempts >= 4 ? d : undefined;
      },
      60_000,
      "four failed attempts",
    );
    expect(failed).toMatchObject({ status: "PENDING", attempts: 4 });
    const job = await queue.getJob(studyRevisionJobId(QUEUES.reportStudy, s.studyInstanceUid, 1));
    expect(await job?.getState()).toBe("delayed");
    const nextRetryAt = failed.updatedAt.getTime() + BACKOFF_SECONDS * 1000 * 2 ** 3;

    await pacsBack();
    const back = Date.now();
    const sent = await waitFor(
      async () => {
        const d = await dicomDelivery(s.gradingJobId);
        return d?.status === "SENT" ? d : undefined;
      },
      40_000,
      "the delivery after the PACS is back",
      100,
    );
    const tookMs = Date.now() - back;
    expect(tookMs).toBeLessThan((PROBE_SECONDS + 4) * 1000);
    expect(nextRetryAt - back).toBeGreaterThan(tookMs + 8_000);
    expect(sent.attempts).toBe(5);
    const found = (await (
      await fetch(`${orthanc!.httpUrl}/tools/find`, {
        method: "POST",
        body: JSON.stringify({
          Level: "Instance",
          Query: { StudyInstanceUID: s.studyInstanceUid, Modality: "SR" },
        }),
      })
    ).json()) as string[];
    expect(found).toHaveLength(1);
    expect(logLines.some((l) => l.includes('"event":"reporter.pacs-back"'))).toBe(true);
    await reporter.close();
    reporter = undefined;
  }, 120_000);

  it("echoes only while a report waits on the PACS, one at a time, and releases only after an outage", async () => {
    await resetDb(db);
    const downLogged = () =>
      logLines.filter((l) => l.includes('"event":"reporter.pacs-probe-down"')).length;
    const downBefore = downLogged();
    let echoes = 0;
    let active = 0;
    let mostActive = 0;
    const peer = { ...pacsPeer(config), timeoutMs: 3000 };
    const echo = async () => {
      echoes += 1;
      active += 1;
      mostActive = Math.max(mostActive, active);
      try {
        return await cEcho(peer);
      } finally {
        active -= 1;
      }
    };
    const probe = startPacsProbe({
      db,
      queue,
      config: { ...config, PACS_PROBE_SECONDS: 0 },
      echo,
      pacsReachable: true,
      pacs: "ORTHANC",
      log,
    });
    try {
      expect(await probe.probe()).toEqual({ state: "idle" });
      // Two reports waiting for their next retry: one on the PACS, one on the FHIR server only.
      const onPacs = await seedGradedStudy(db, config);
      const onFhir = await seedGradedStudy(db, config);
      for (const [s, pending] of [
        [onPacs, "DICOM"],
        [onFhir, "FHIR"],
      ] as const) {
        await seedReport(s, pending);
      }
      const pacsJob = await reportJob(queue, onPacs, 600_000);
      const fhirJob = await reportJob(queue, onFhir, 600_000);
      expect(echoes).toBe(0);

      // The PACS answers and was never seen down: a refusal's report keeps its schedule.
      expect(await probe.probe()).toEqual({ state: "up" });
      expect(echoes).toBe(1);
      expect(await pacsJob.getState()).toBe("delayed");

      await pacsDown();
      const rounds = await Promise.all([probe.probe(), probe.probe(), probe.probe()]);
      expect(rounds).toEqual([{ state: "down" }, { state: "down" }, { state: "down" }]);
      expect(echoes).toBe(4);
      expect(mostActive).toBe(1);
      expect(downLogged() - downBefore).toBe(1);

      await pacsBack();
      expect(await probe.probe()).toEqual({ state: "back", released: 1 });
      expect(await pacsJob.getState()).toBe("waiting");
      expect(await fhirJob.getState()).toBe("delayed");
      // Only the FHIR server's report waits now: no C-ECHO.
      expect(await probe.probe()).toEqual({ state: "idle" });
      expect(echoes).toBe(5);
    } finally {
      await probe.stop();
    }
    // Counts and addresses only: no patient data in what the reporter logged.
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) {
      expect(line).not.toContain(PATIENT.name);
      expect(line).not.toContain(PATIENT.id);
      expect(line).not.toContain("Patricia");
    }
  }, 60_000);
  it("remembers an outage while a report is between attempts, and releases when the PACS is back", async () => {
    await resetDb(db);
    await queue.obliterate({ force: true });
    const probe = startPacsProbe({
      db,
      queue,
      config: { ...config, PACS_PROBE_SECONDS: 0 },
      echo: () => cEcho({ ...pacsPeer(config), timeoutMs: 3000 }),
      pacsReachable: true,
      pacs: "ORTHANC",
      log,
    });
    const waitingReport = async (delay: number) => {
      const s = await seedGradedStudy(db, config);
      await seedReport(s, "DICOM", ["DICOM"]);
      return reportJob(queue, s, delay);
    };
    try {
      const first = await waitingReport(600_000);
      await pacsDown();
      expect(await probe.probe()).toEqual({ state: "down" });
      // Its next attempt is due: for a moment no report is delayed, one is waiting to be tried.
      await first.promote();
      expect(await probe.probe()).toEqual({ state: "idle" });
      // That attempt failed too, and another report waits for its retry when the PACS is back.
      const second = await waitingReport(600_000);
      await pacsBack();
      expect(await probe.probe()).toEqual({ state: "back", released: 1 });
      expect(await second.getState()).toBe("waiting");
    } finally {
      await probe.stop();
    }
  }, 60_000);
});
