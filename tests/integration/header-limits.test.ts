/**
 * Header values beyond DICOM limits: a study whose Patient Name, Patient ID and
 * Accession Number are too long and whose StudyDate and StudyTime are malformed goes through
 * storescu → listener → worker → reporter → Orthanc to REPORTED, with the patient's identity
 * stored at ingest (truncated at the VR limits) and in the SR; no header value reaches a log, an
 * audit row or a job's failure in Redis; and a report object that cannot be encoded fails its job
 * at once with a code instead of retrying for hours.
 *
 * Header values beyond ASCII: the same pipeline carries a patient name and a study
 * description in UTF-8 (ISO_IR 192) and in Latin-1 (ISO_IR 100) into the SR and the Secondary
 * Capture that arrive in Orthanc, exactly: the value's bytes in the file Orthanc stores, and the
 * text Orthanc decodes from them.
 */
import { execFile } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Config } from "@kneegrade/config";
import { QUEUES } from "@kneegrade/contracts";
import { createDb, type Db } from "@kneegrade/db";
import { type RunningListener, startListener } from "@kneegrade/listener";
import { createQueue } from "@kneegrade/queue";
import { type RunningReporter, startReporter } from "@kneegrade/reporter";
import { composeRadiograph, radiographDicom } from "@kneegrade/sample-radiographs";
import { type RunningWorker, startWorker } from "@kneegrade/worker";
import type { Queue } from "bullmq";
import dicomParser from "dicom-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dciodvfyErrors, storescu, tool } from "../helpers/dcmtk.ts";
import {
  capturingLogger,
  cleanupConfig,
  closeAll,
  pipelineSettings,
  resetDb,
  testConfig,
  waitFor,
} from "../helpers/env.ts";
import {
  element,
  insertElements,
  joinPart10,
  removeElement,
  splitPart10,
} from "../helpers/oddities.ts";
import { type RunningOrthanc, startOrthanc } from "../helpers/orthanc.ts";
import { SAMPLE_CROPS } from "../helpers/small-studies.ts";
import { newUid } from "../helpers/studies.ts";

const run = promisify(execFile);
const work = join(tmpdir(), `kneegrade-header-limits-${process.pid}`);

/** 70 characters; "Quixotebrandtfeld" and "Wilhelmina" appear nowhere but in this header. */
const NAME = "Quixotebrandtfeld-Oyelaran^Wilhelmina Perpetua Anastasia^Maria^Dr.^Jr.";
/** The name as PN allows it: the first 64 bytes of its component group, no trailing separator. */
const NAME_STORED = "Quixotebrandtfeld-Oyelaran^Wilhelmina Perpetua Anastasia^Maria^D";
const PATIENT_ID = "KGSECRETID".repeat(8); // 80 characters, LO allows 64
const ACCESSION = "ACCESSION-NUMBER-TOO-LONG-123"; // SH allows 16
/** Anything of the header that must not reach a log, an audit row or Redis. */
const SECRETS = /Quixotebrandtfeld|Wilhelmina|KGSECRETID|ACCESSION-NUMBER-TOO|2026112712|Jürgen/;

/** A patient and a study description as a German hospital's modality writes them. */
const WHO = "Müller^Jürgen";
const BEYOND_ASCII = [
  { charset: "ISO_IR 192", encoding: "utf8", studyDescription: "Kniegelenk – beidseits" },
  // Latin-1 has no en dash; the middle dot (B7) is one of its own characters beyond ASCII.
  { charset: "ISO_IR 100", encoding: "latin1", studyDescription: "Kniegelenk · beidseits" },
] as const;

/** A text value in `encoding`, padded to even length with a space (PS3.5 6.2). */
function textValue(value: string, encoding: BufferEncoding): Buffer {
  const bytes = Buffer.from(value, encoding);
  return bytes.length % 2 ? Buffer.concat([bytes, Buffer.from(" ")]) : bytes;
}

/** A value's bytes as stored, without its padding. */
function storedBytes(file: Buffer, tag: string): Buffer {
  const el = dicomParser.parseDicom(new Uint8Array(file), { untilTag: "x7fe00010" }).elements[tag];
  if (!el) throw new Error(`no ${tag}`);
  const value = file.subarray(el.dataOffset, el.dataOffset + el.length);
  let end = value.length;
  while (end > 0 && (value[end - 1] === 0x20 || value[end - 1] === 0)) end--;
  return value.subarray(0, end);
}

describe("header values beyond DICOM limits: storescu → kneegrade → Orthanc", () => {
  let orthanc: RunningOrthanc;
  let config: Config;
  let db: Db;
  let listener: RunningListener;
  let worker: RunningWorker;
  let reporter: RunningReporter;
  let reportQueue: Queue;
  /** Every log line of the three services, at debug level. */
  const lines: string[] = [];
  const log = capturingLogger(lines);
  let studyInstanceUid: string;
  /** The studies with text beyond ASCII, one per character set. */
  const beyondAscii: { charset: string; studyDescription: string; studyInstanceUid: string }[] = [];

  beforeAll(async () => {
    await mkdir(work, { recursive: true });
    orthanc = await startOrthanc("ORTHANC");
    config = await testConfig({
      ...(await pipelineSettings(orthanc.dicomPort, "smoke")),
      DELIVERY_ATTEMPTS: "8",
    });
    db = createDb(config.DATABASE_URL);
    await resetDb(db);
    listener = await startListener(config, db, log);
    worker = await startWorker(config, db, log);
    reporter = await startReporter(config, db, log);
    reportQueue = createQueue(QUEUES.reportStudy, config);

    // A small bilateral radiograph, then the hostile header values (dcmodify writes what it is
    // told: a modality's header can say anything).
    const r = await composeRadiograph({
      widthMm: 360,
      heightMm: 300,
      spacingMm: 0.5,
      knees: [
        { png: SAMPLE_CROPS[1]!, xMm: 95, yMm: 150, sideMm: 90 },
        { png: SAMPLE_CROPS[3]!, xMm: 265, yMm: 150, sideMm: 90 },
      ],
    });
    studyInstanceUid = newUid();
    const path = join(work, "hostile.dcm");
    await writeFile(path, radiographDicom(r, { studyInstanceUid }));
    const edit = await tool("dcmodify", [
      "-nb",
      ...["-m", `(0010,0010)=${NAME}`],
      ...["-m", `(0010,0020)=${PATIENT_ID}`],
      ...["-m", `(0008,0050)=${ACCESSION}`],
      ...["-m", "(0008,0020)=2026112712"],
      ...["-m", "(0008,0030)=10:15:00"],
      path,
    ]);
    expect(edit.code, edit.stderr).toBe(0);
    const sent = await storescu({ port: listener.port, calledAet: config.LISTENER_AET }, [path]);
    expect(sent.code, sent.stderr).toBe(0);

    // The same radiograph, with the name, the description and their character set written byte
    // for byte (dcmodify would take them as UTF-8 whatever the character set says).
    const paths: string[] = [];
    for (const { charset, encoding, studyDescription } of BEYOND_ASCII) {
      const uid = newUid();
      let parts = splitPart10(Buffer.from(radiographDicom(r, { studyInstanceUid: uid })));
      for (const tag of [0x00080005, 0x00081030, 0x00100010]) parts = removeElement(parts, tag);
      parts = insertElements(
        parts,
        0x00080005,
        element(0x00080005, "CS", textValue(charset, "latin1")),
      );
      parts = insertElements(
        parts,
        0x00081030,
        element(0x00081030, "LO", textValue(studyDescription, encoding)),
      );
      parts = insertElements(
        parts,
        0x00100010,
        element(0x00100010, "PN", textValue(WHO, encoding)),
      );
      const file = join(work, `${charset.replace(/\W/g, "")}.dcm`);
      await writeFile(file, joinPart10(parts));
      paths.push(file);
      beyondAscii.push({ charset, studyDescription, studyInstanceUid: uid });
    }
    const more = await storescu({ port: listener.port, calledAet: config.LISTENER_AET }, paths);
    expect(more.code, more.stderr).toBe(0);
  }, 300_000);

  afterAll(async () => {
    await closeAll(reportQueue, reporter, worker, listener, orthanc);
    await db?.$disconnect();
    if (config) await cleanupConfig(config);
    await rm(work, { recursive: true, force: true });
  });

  const study = () => db.study.findUniqueOrThrow({ where: { studyInstanceUid } });

  it("stores the patient's identity at ingest, within the limits, and says which values changed", async () => {
    const stored = await waitFor(
      async () => (await db.study.findUnique({ where: { studyInstanceUid } })) ?? undefined,
    );
    expect(stored).toMatchObject({
      patientName: NAME_STORED,
      patientId: PATIENT_ID.slice(0, 64),
      accessionNumber: ACCESSION.slice(0, 16),
      studyDate: null,
    });
    const audit = await db.auditEvent.findFirstOrThrow({
      where: { event: "instance.stored", studyInstanceUid },
    });
    expect(audit.details).toMatchObject({
      headerLimits: expect.arrayContaining([
        {
          tag: "(0010,0010)",
          vr: "PN",
          action: "truncated",
          rule: "PN: at most 64 bytes per component group",
        },
        { tag: "(0010,0020)", vr: "LO", action: "truncated", rule: "LO: at most 64 bytes" },
        { tag: "(0008,0050)", vr: "SH", action: "truncated", rule: "SH: at most 16 bytes" },
        { tag: "(0008,0020)", vr: "DA", action: "dropped", rule: "DA: a calendar date YYYYMMDD" },
      ]),
    });
    const noted = lines.map((l) => JSON.parse(l)).find((e) => e.event === "instance.header-limits");
    expect(noted?.attributes.map((a: { tag: string }) => a.tag).sort()).toEqual([
      "(0008,0020)",
      "(0008,0050)",
      "(0010,0010)",
      "(0010,0020)",
    ]);
  });

  it("reports the study: an SR in the PACS with the truncated name, the job done on its first attempt", async () => {
    await waitFor(
      async () => ((await study()).status === "REPORTED" ? true : undefined),
      120_000,
      "REPORTED",
    );
    expect(await study()).toMatchObject({
      patientName: NAME_STORED,
      patientId: PATIENT_ID.slice(0, 64),
    });

    const found = (await (
      await fetch(`${orthanc.httpUrl}/tools/find`, {
        method: "POST",
        body: JSON.stringify({
          Level: "Instance",
          Query: { StudyInstanceUID: studyInstanceUid, Modality: "SR" },
        }),
      })
    ).json()) as string[];
    expect(found).toHaveLength(1);
    const file = join(work, "sr.dcm");
    await writeFile(
      file,
      new Uint8Array(
        await (await fetch(`${orthanc.httpUrl}/instances/${found[0]}/file`)).arrayBuffer(),
      ),
    );
    const dump = (
      await run("dcmdump", ["+P", "0010,0010", "+P", "0010,0020", "+P", "0008,0020", file])
    ).stdout;
    expect(dump).toContain(`[${NAME_STORED}]`);
    expect(dump).toContain(`[${PATIENT_ID.slice(0, 64)}]`);
    expect(dump).toMatch(/\(0008,0020\) DA \(no value available\)/);
    expect(await dciodvfyErrors(file)).toEqual([]);
    // The report says what it left out or shortened, without the values.
    const text = (await run("dsrdump", ["+Pl", file])).stdout;
    expect(text).toContain(
      "StudyTime (0008,0030) in the images is beyond the DICOM limits of its VR",
    );

    const job = await reportQueue.getJob(`report-study_${studyInstanceUid}_r1`);
    expect(await job?.getState()).toBe("completed");
    expect(job?.failedReason ?? "").toBe("");
    expect(job?.stacktrace ?? []).toEqual([]);
  }, 150_000);

  it("fails a report object that cannot be encoded at once, with a code and UIDs only", async () => {
    const { id: studyId } = await study();
    const grading = await db.gradingJob.findFirstOrThrow({ where: { studyId } });
    // The written objects gone and the crops corrupt: the secondary capture cannot be encoded,
    // on this attempt or any other.
    await db.report.deleteMany({ where: { gradingJobId: grading.id } });
    await db.kneeResult.updateMany({
      where: { gradingJobId: grading.id },
      data: { cropPng: new Uint8Array([1, 2, 3, 4]) },
    });
    const job = await reportQueue.add(
      QUEUES.reportStudy,
      { schemaVersion: 1, studyId, studyInstanceUid, revision: 1, gradingJobId: grading.id },
      { jobId: `report-study_${studyInstanceUid}_r1_corrupt` },
    );
    const failed = await waitFor(
      // The state first, then the job: a job read before its failure was written would still
      // show the attempts of before.
      async () =>
        (await reportQueue.getJobState(job.id!)) === "failed"
          ? reportQueue.getJob(job.id!)
          : undefined,
      15_000,
      "the job to fail",
    );
    // One attempt of the eight DELIVERY_ATTEMPTS allows.
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failedReason).toBe(
      `REPORT_OBJECT_INVALID: the sc of study ${studyInstanceUid} could not be encoded`,
    );
    const dead = await waitFor(
      async () =>
        (await db.auditEvent.findFirst({
          where: { event: "report.dead-letter", studyInstanceUid },
        })) ?? undefined,
    );
    expect(dead.details).toMatchObject({ code: "REPORT_OBJECT_INVALID" });
  });

  it("carries a name and a study description beyond ASCII into the SR and the SC in the PACS, exactly", async () => {
    for (const { charset, studyDescription, studyInstanceUid: uid } of beyondAscii) {
      await waitFor(
        async () =>
          (await db.study.findUnique({ where: { studyInstanceUid: uid } }))?.status === "REPORTED"
            ? true
            : undefined,
        120_000,
        `the ${charset} study REPORTED`,
      );
      const stored = await db.study.findUniqueOrThrow({ where: { studyInstanceUid: uid } });
      expect(stored.patientName, charset).toBe(WHO);
      for (const modality of ["SR", "OT"]) {
        const found = (await (
          await fetch(`${orthanc.httpUrl}/tools/find`, {
            method: "POST",
            body: JSON.stringify({
              Level: "Instance",
              Query: { StudyInstanceUID: uid, Modality: modality },
            }),
          })
        ).json()) as string[];
        expect(found, `${charset} ${modality}`).toHaveLength(1);
        const instance = `${orthanc.httpUrl}/instances/${found[0]}`;
        const file = Buffer.from(await (await fetch(`${instance}/file`)).arrayBuffer());
        // kneegrade writes its objects in UTF-8, whatever the images' character set was.
        const what = `${charset} → ${modality}`;
        expect(storedBytes(file, "x00080005").toString("latin1"), what).toBe("ISO_IR 192");
        expect(storedBytes(file, "x00100010").equals(Buffer.from(WHO, "utf8")), what).toBe(true);
        expect(
          storedBytes(file, "x00081030").equals(Buffer.from(studyDescription, "utf8")),
          what,
        ).toBe(true);
        const tags = (await (await fetch(`${instance}/simplified-tags`)).json()) as Record<
          string,
          string
        >;
        expect({ name: tags.PatientName, description: tags.StudyDescription }, what).toEqual({
          name: WHO,
          description: studyDescription,
        });
        const path = join(work, `${charset.replace(/\W/g, "")}-${modality}.dcm`);
        await writeFile(path, file);
        expect(await dciodvfyErrors(path), what).toEqual([]);
      }
    }
    // The image was spooled as sent: the Latin-1 bytes, under the character set that names them.
    const latin1 = beyondAscii.find((b) => b.charset === "ISO_IR 100")!;
    const instance = await db.instance.findFirstOrThrow({
      where: { study: { studyInstanceUid: latin1.studyInstanceUid } },
    });
    const spooled = await readFile(instance.spoolPath!);
    expect(storedBytes(spooled, "x00100010").equals(Buffer.from(WHO, "latin1"))).toBe(true);
  }, 300_000);

  it("lets no header value into the logs, the audit trail or the jobs in Redis", async () => {
    expect(lines.length).toBeGreaterThan(10);
    expect(lines.join("\n")).not.toMatch(SECRETS);
    const audit = await db.auditEvent.findMany({ where: { studyInstanceUid } });
    expect(audit.length).toBeGreaterThan(3);
    expect(JSON.stringify(audit.map((a) => a.details))).not.toMatch(SECRETS);
    for (const state of ["completed", "failed"] as const) {
      for (const j of await reportQueue.getJobs([state])) {
        expect(
          JSON.stringify({ data: j.data, failedReason: j.failedReason, stacktrace: j.stacktrace }),
        ).not.toMatch(SECRETS);
      }
    }
  });
});
