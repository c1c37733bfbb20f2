/**
 * The result in the RIS with real peers: the reporter delivers a graded study's SR to Orthanc and
 * its result to a FHIR R4 server (Medplum's router and in-memory repository; every resource
 * validated against the R4 definitions) and to an HL7 v2 MLLP listener (node-hl7-server, which
 * ACKs) — the AI's result as preliminary / P, the signed revision as final / F. A peer that is
 * down gets the result once it is back; an AE acknowledgement retries until the dead letter, and
 * `kneegrade redeliver` sends it again.
 *
 * The study is recorded as the worker records a graded one (no model run here): its DICOM header,
 * spooled, carries the patient data, with HL7 delimiters in it on purpose.
 */
import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { type Config, loadConfig } from "@kneegrade/config";
import { QUEUES, signedReportJobId, studyRevisionJobId } from "@kneegrade/contracts";
import { createDb, type Db } from "@kneegrade/db";
import { reportUids, signedSrUid } from "@kneegrade/dicom-writers";
import { createMetrics } from "@kneegrade/ops";
import { createQueue } from "@kneegrade/queue";
import { redeliver } from "@kneegrade/report-jobs";
import {
  pacsPeer,
  processReportJob,
  type RunningReporter,
  startReporter,
} from "@kneegrade/reporter";
import { buildReviewApp } from "@kneegrade/review";
import { addUser } from "@kneegrade/review-data";
import { checkFhir, checkHl7, postTransaction, resultOutputs, sendResult } from "@kneegrade/ris";
import { Operator } from "@medplum/core";
import type {
  Bundle,
  Device,
  DiagnosticReport,
  ImagingStudy,
  Observation,
  Patient,
} from "@medplum/fhirtypes";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectStatus } from "../../packages/cli/src/status.ts";
import { mutualTlsCerts } from "../helpers/certs.ts";
import { configEnv, kill, metricsPortOf, startServe } from "../helpers/cli.ts";
import { capturingLogger, cleanupConfig, resetDb, testConfig, waitFor } from "../helpers/env.ts";
import { type FhirTestServer, startFhirServer } from "../helpers/fhir.ts";
import { type GradedStudy, seedGradedStudy as seedGraded } from "../helpers/graded-study.ts";
import { type Hl7TestPeer, type ReceivedMessage, startHl7Peer } from "../helpers/hl7.ts";
import { readyz } from "../helpers/metrics.ts";
import { type RunningOrthanc, startOrthanc } from "../helpers/orthanc.ts";

const TOKEN = "fhir-test-token-0123456789";
const MODEL = "kl-pim-ensemble-1.0.0-0123456789ab";
const ATTEMPTS = 6;
/** Everything the reporter logs (debug level), to check that no patient data is in it. */
const logLines: string[] = [];
const log = capturingLogger(logLines);

interface Seeded extends GradedStudy {
  accession: string;
}

/**
 * A radiologist's signature of `s` as the review pages record it (a new account, the review and its
 * knees; the AI graded right 2, left 3). Returns the review's id.
 */
async function recordSignature(
  db: Db,
  s: Seeded,
  aiSr: string,
  signer: { username: string; password: string; displayName: string },
  review: { right: number; left: number; findings: string; impression: string },
): Promise<string> {
  const user = await addUser(db, {
    ...signer,
    organisation: "Test Hospital Radiology",
    role: "radiologist",
  });
  const reviewId = randomUUID();
  const { right, left, findings, impression } = review;
  await db.review.create({
    data: {
      id: reviewId,
      studyId: s.studyId,
      gradingJobId: s.gradingJobId,
      userId: user.id,
      sequence: 1,
      predecessorSopInstanceUid: aiSr,
      sopInstanceUid: signedSrUid(reviewId),
      findings,
      impression,
      knees: {
        create: [
          { kneeResultId: s.kneeIds.right, aiGrade: 2, radiologistGrade: right },
          { kneeResultId: s.kneeIds.left, aiGrade: 3, radiologistGrade: left },
        ],
      },
    },
  });
  return reviewId;
}

/** A study graded as the worker records it (right knee KL 2, left KL 3), its patient data in its header. */
async function seedGradedStudy(db: Db, config: Config, accession: string): Promise<Seeded> {
  const seeded = await seedGraded(db, config, {
    accession,
    modelVersion: MODEL,
    header: {
      SpecificCharacterSet: "ISO_IR 192",
      StudyDate: "20261201",
      StudyTime: "093000",
      AccessionNumber: accession,
      StudyDescription: "XR KNEES AP",
      // HL7's delimiters in patient data: the ORU must escape them (\T\ \F\), FHIR carry them as is.
      PatientName: "Smith&Jones^Mary",
      PatientID: "MRN-0042",
      PatientBirthDate: "19580412",
    },
  });
  return { ...seeded, accession };
}

describe("results to the RIS: FHIR R4 and HL7 v2 ORU^R01 through the reporter's outbox", () => {
  let orthanc: RunningOrthanc;
  let fhir: FhirTestServer;
  let hl7: Hl7TestPeer;
  let config: Config;
  let db: Db;
  let reporter: RunningReporter;
  const metrics = createMetrics();
  let queue: ReturnType<typeof createQueue>;

  beforeAll(async () => {
    [orthanc, fhir, hl7] = await Promise.all([
      startOrthanc("ORTHANC"),
      startFhirServer({ token: TOKEN }),
      startHl7Peer(),
    ]);
    config = await testConfig({
      PACS_PORT: String(orthanc.dicomPort),
      PACS_AET: "ORTHANC",
      DIMSE_TIMEOUT_SECONDS: "5",
      DELIVERY_ATTEMPTS: String(ATTEMPTS),
      DELIVERY_BACKOFF_SECONDS: "0.3",
      REPORT_SECONDARY_CAPTURE: "0",
      INSTITUTION_NAME: "Test Hospital",
      FHIR_BASE_URL: fhir.baseUrl,
      FHIR_TOKEN: TOKEN,
      FHIR_PATIENT_ID_SYSTEM: "urn:oid:1.2.826.0.1.3680043.8.498.99",
      HL7_HOST: hl7.host,
      HL7_PORT: String(hl7.port),
      HL7_RECEIVING_APPLICATION: "TESTRIS",
      RESULT_TIMEOUT_SECONDS: "3",
    });
    db = createDb(config.DATABASE_URL);
    await resetDb(db);
    reporter = await startReporter(config, db, log, metrics);
    queue = createQueue(QUEUES.reportStudy, config);
  }, 60_000);

  afterAll(async () => {
    await reporter?.close();
    await queue?.close();
    await db?.$disconnect();
    await Promise.all([orthanc?.stop(), fhir?.close(), hl7?.close()]);
    if (config) await cleanupConfig(config);
  });

  const reportJob = (s: Seeded, reviewId?: string) =>
    queue.add(
      QUEUES.reportStudy,
      {
        schemaVersion: 1,
        studyId: s.studyId,
        studyInstanceUid: s.studyInstanceUid,
        revision: 1,
        gradingJobId: s.gradingJobId,
        ...(reviewId ? { reviewId } : {}),
      },
      {
        jobId: reviewId
          ? signedReportJobId(s.studyInstanceUid, 1, reviewId)
          : studyRevisionJobId(QUEUES.reportStudy, s.studyInstanceUid, 1),
      },
    );

  /** The deliveries of one SR (by SOP Instance UID), by channel. */
  const deliveriesOf = async (sopInstanceUid: string) => {
    const rows = await db.delivery.findMany({ where: { report: { sopInstanceUid } } });
    return Object.fromEntries(rows.map((d) => [d.channel, d]));
  };
  type Deliveries = Awaited<ReturnType<typeof deliveriesOf>>;
  /** The deliveries of one SR once `ready` holds for them. */
  const deliveriesWhen = (
    sopInstanceUid: string,
    ready: (d: Deliveries) => boolean | Promise<boolean>,
    timeoutMs: number,
    what: string,
  ) =>
    waitFor(
      async () => {
        const d = await deliveriesOf(sopInstanceUid);
        return (await ready(d)) ? d : undefined;
      },
      timeoutMs,
      what,
    );
  const whenSent = (sopInstanceUid: string, what: string, timeoutMs = 30_000) =>
    deliveriesWhen(
      sopInstanceUid,
      (d) => ["DICOM", "FHIR", "HL7"].every((c) => d[c]?.status === "SENT"),
      timeoutMs,
      what,
    );
  /** A graded study with this accession number, its report job queued, and its AI SR's UID. */
  const reported = async (accession: string) => {
    const s = await seedGradedStudy(db, config, accession);
    const aiSr = reportUids(s.gradingJobId).aiSr;
    await reportJob(s);
    return { s, aiSr };
  };
  /**
   * A study reported while the HL7 peer answers `answer` (AE, AR) to every ORU, once its ORU is a
   * dead letter (and, with `studyReported`, the study REPORTED too).
   */
  const deadLettered = async (
    answer: "AE" | "AR",
    accession: string,
    timeoutMs: number,
    studyReported = false,
  ) => {
    hl7.answer = answer;
    const { s, aiSr } = await reported(accession);
    const dead = await deliveriesWhen(
      aiSr,
      async (d) => {
        if (d.HL7?.status !== "FAILED") return false;
        if (!studyReported) return true;
        const study = await db.study.findUnique({ where: { id: s.studyId } });
        return study?.status === "REPORTED";
      },
      timeoutMs,
      `the dead letter of an ORU answered ${answer}`,
    );
    return { s, aiSr, dead };
  };

  const reportFor = async (s: Seeded) => {
    const bundle = await fhir.repo.search<DiagnosticReport>({
      resourceType: "DiagnosticReport",
      filters: [
        {
          code: "identifier",
          operator: Operator.EQUALS,
          value: `urn:dicom:uid|urn:oid:${reportUids(s.gradingJobId).aiSr}`,
        },
      ],
    });
    return (bundle.entry ?? []).map((e) => e.resource as DiagnosticReport);
  };
  const messagesFor = (s: Seeded) =>
    hl7.messages.filter((m) => m.get("OBR.3.1").toString() === s.accession);
  const obxOf = (m: ReceivedMessage, code: string) => {
    const all = m.get("OBX");
    const out: { subId: string; value: string; status: string; name: string }[] = [];
    all.forEach((obx) => {
      if (obx.get("3.1").toString() === code) {
        out.push({
          subId: obx.get("4").toString(),
          value: obx.get("5.1").toString(),
          status: obx.get("11").toString(),
          name: obx.get("3.2").toString(),
        });
      }
    });
    return out;
  };

  it("has a FHIR server that refuses what R4 does not allow (the peer is no mock)", async () => {
    const post = async (resource: unknown) => {
      const res = await fetch(`${fhir.baseUrl}/Observation`, {
        method: "POST",
        headers: { "content-type": "application/fhir+json", authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify(resource),
      });
      return res.status;
    };
    const valid = { resourceType: "Observation", status: "final", code: { text: "x" } };
    expect(await post(valid)).toBe(201);
    expect(await post({ ...valid, status: "bogus" })).toBe(400);
    expect(await post({ ...valid, code: undefined })).toBe(400);
    expect(await post({ ...valid, valueCodeableConcept: { coding: "KL2" } })).toBe(400);
    expect(fhir.rejected).toHaveLength(3);
    fhir.rejected.length = 0;
    await fhir.repo.deleteResource(
      "Observation",
      (await fhir.repo.search({ resourceType: "Observation" })).entry![0]!.resource!.id!,
    );
  });

  it("checks at start-up that the FHIR server (R4, transactions) and the HL7 peer answer, and warns when they do not", async () => {
    expect(reporter.outputs.fhir?.reachable).toBe(true);
    expect(reporter.outputs.hl7?.reachable).toBe(true);
    expect(logLines.join("")).toContain('"event":"reporter.fhir-ok"');
    expect(logLines.join("")).toContain('"event":"reporter.hl7-ok"');
    // The FHIR check read the CapabilityStatement, with the token.
    expect(fhir.requests).toContainEqual({
      method: "GET",
      url: "/fhir/metadata",
      authorization: `Bearer ${TOKEN}`,
    });
    const up = await collectStatus(db, config);
    expect(up.outputs).toEqual({
      fhir: { target: fhir.baseUrl, reachable: true },
      hl7: { target: `${hl7.host}:${hl7.port}`, reachable: true },
    });

    await Promise.all([fhir.stop(), hl7.stop()]);
    try {
      await expect(reporter.outputs.fhir!.check()).rejects.toThrow(
        /FHIR server http:\/\/127\.0\.0\.1:\d+\/fhir is not reachable: .*ECONNREFUSED/,
      );
      await expect(reporter.outputs.hl7!.check()).rejects.toThrow(
        /HL7 peer 127\.0\.0\.1:\d+ is not reachable: .*ECONNREFUSED/,
      );
      const down = await collectStatus(db, config);
      expect(down.outputs.fhir).toMatchObject({ reachable: false, error: /ECONNREFUSED/ });
      expect(down.outputs.hl7).toMatchObject({ reachable: false, error: /ECONNREFUSED/ });
      expect(down.warnings.filter((w) => /results wait in the outbox/.test(w))).toHaveLength(2);
      // A reporter that starts while both are down starts (the outbox retries), with a warning each.
      const from = logLines.length;
      const second = await startReporter(config, db, log);
      await second.close();
      expect(second.outputs.fhir?.reachable).toBe(false);
      expect(second.outputs.hl7?.reachable).toBe(false);
      const warned = logLines.slice(from).join("");
      expect(warned).toMatch(/"level":40[^\n]*"event":"reporter.fhir-unreachable"/);
      expect(warned).toMatch(/"level":40[^\n]*"event":"reporter.hl7-unreachable"/);
      expect(warned).not.toContain(TOKEN);
    } finally {
      await Promise.all([fhir.start(), hl7.start()]);
    }
    await expect(reporter.outputs.fhir!.check()).resolves.toBeUndefined();
    await expect(reporter.outputs.hl7!.check()).resolves.toBeUndefined();
  }, 30_000);

  it("refuses a FHIR server that is not R4 or takes no transactions", async () => {
    const peer = (baseUrl: string) => ({ baseUrl, timeoutMs: 3000 });
    const r5 = await startFhirServer({ metadata: { fhirVersion: "5.0.0" } });
    const noTransaction = await startFhirServer({ metadata: { transaction: false } });
    try {
      await expect(checkFhir(peer(r5.baseUrl))).rejects.toThrow(/speaks FHIR 5\.0\.0, not R4/);
      await expect(checkFhir(peer(noTransaction.baseUrl))).rejects.toThrow(
        /does not declare the transaction interaction/,
      );
      // Not a FHIR base at all (the server answers 404 outside /fhir).
      await expect(checkFhir(peer(r5.baseUrl.replace(/\/fhir$/, "/other")))).rejects.toThrow(
        /answered 404 to GET metadata/,
      );
    } finally {
      await Promise.all([r5.close(), noTransaction.close()]);
    }
  });

  it("sends the ORU over MLLP with mutual TLS to node-hl7-server's TLS listener, and is refused without a client certificate", async () => {
    const { dir, server, client } = await mutualTlsCerts("kneegrade-hl7-tls-");
    const secure = await startHl7Peer({ tls: { ...server, clientCa: client.cert } });
    try {
      const env = (more: Record<string, string>) => ({
        HL7_HOST: secure.host,
        HL7_PORT: String(secure.port),
        HL7_TLS: "1",
        HL7_TLS_CA: server.cert,
        RESULT_TIMEOUT_SECONDS: "3",
        ...more,
      });
      const mtls = resultOutputs(
        loadConfig(env({ HL7_TLS_CERT: client.cert, HL7_TLS_KEY: client.key })),
      );
      expect(mtls.hl7?.tls?.cert).toContain("BEGIN CERTIFICATE");
      await expect(checkHl7(mtls.hl7!)).resolves.toBeUndefined();
      const s = await seedGradedStudy(db, config, "ACC-TLS");
      const aiSr = reportUids(s.gradingJobId).aiSr;
      const delivery = { id: randomUUID(), channel: "HL7" as const };
      const report = { gradingJobId: s.gradingJobId, sopInstanceUid: aiSr, verified: false };
      await sendResult(db, delivery, report, mtls, config);
      expect(secure.messages).toHaveLength(1);
      expect(secure.messages[0]!.get("OBR.3.1").toString()).toBe("ACC-TLS");
      expect(secure.messages[0]!.get("OBR.25").toString()).toBe("P");

      // Without our certificate the peer ends the handshake: unreachable, nothing sent.
      const anonymous = resultOutputs(loadConfig(env({})));
      await expect(checkHl7(anonymous.hl7!)).rejects.toThrow(
        /HL7 peer .* \(TLS\) is not reachable/,
      );
      await expect(sendResult(db, delivery, report, anonymous, config)).rejects.toThrow();
      // A server certificate we do not trust: refused before anything is sent.
      const untrusted = resultOutputs(
        loadConfig(
          env({ HL7_TLS_CA: client.cert, HL7_TLS_CERT: client.cert, HL7_TLS_KEY: client.key }),
        ),
      );
      await expect(checkHl7(untrusted.hl7!)).rejects.toThrow(/self[- ]signed|certificate/i);
      expect(secure.messages).toHaveLength(1);
      // A TLS file that is not there stops the start with the variable's name.
      expect(() =>
        resultOutputs(loadConfig(env({ HL7_TLS_CA: join(dir, "missing.pem") }))),
      ).toThrow(/HL7_TLS_CA: cannot read .*missing\.pem \(ENOENT\)/);
    } finally {
      await secure.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it("reaches a FHIR server that requires a client certificate (mTLS), and is refused without one", async () => {
    const { dir, server, client } = await mutualTlsCerts("kneegrade-fhir-tls-");
    const secure = await startFhirServer({ tls: { ...server, clientCa: client.cert } });
    try {
      const bundle: Bundle = {
        resourceType: "Bundle",
        type: "transaction",
        entry: [
          {
            resource: { resourceType: "Device", status: "active", manufacturer: "kneegrade" },
            request: { method: "POST", url: "Device" },
          },
        ],
      };
      const outputs = (env: Record<string, string>) =>
        resultOutputs(
          loadConfig({ FHIR_BASE_URL: secure.baseUrl, FHIR_TLS_CA: server.cert, ...env }),
        );
      const mtls = outputs({ FHIR_TLS_CERT: client.cert, FHIR_TLS_KEY: client.key }).fhir!;
      const answer = await postTransaction(mtls, bundle);
      expect(answer.type).toBe("transaction-response");
      expect((await secure.repo.search({ resourceType: "Device" })).entry).toHaveLength(1);
      await expect(postTransaction(outputs({}).fhir!, bundle)).rejects.toThrow();
      expect(secure.requests).toHaveLength(1);
    } finally {
      await secure.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("sends the AI result as a preliminary DiagnosticReport and an ORU with P, then the signed one as final and F", async () => {
    const { s, aiSr } = await reported("ACC|77-A");
    const sent = await whenSent(aiSr, "the AI result in Orthanc, the FHIR server and the RIS");
    expect(sent.FHIR).toMatchObject({ attempts: 1, lastError: null, destinationAet: "FHIR" });
    expect(sent.HL7).toMatchObject({ attempts: 1, lastError: null, destinationAet: "TESTRIS" });

    // FHIR: stored (the server validated every resource) and read back.
    expect(fhir.rejected).toEqual([]);
    expect(fhir.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    const [report, ...more] = await reportFor(s);
    expect(more).toEqual([]);
    expect(report).toMatchObject({
      status: "preliminary",
      code: { coding: [{ system: "http://loinc.org", code: "18748-4" }] },
      basedOn: [{ identifier: { value: "ACC|77-A" } }],
    });
    expect(report!.conclusion).toMatch(/Right knee: .*grade 2/);
    expect(report!.conclusion).toMatch(/unverified/i);
    const patient = await fhir.repo.readReference<Patient>(report!.subject as never);
    expect(patient).toMatchObject({
      identifier: [{ system: "urn:oid:1.2.826.0.1.3680043.8.498.99", value: "MRN-0042" }],
      name: [{ family: "Smith&Jones", given: ["Mary"] }],
      gender: "female",
      birthDate: "1958-04-12",
    });
    const study = await fhir.repo.readReference<ImagingStudy>(report!.imagingStudy![0] as never);
    expect(study.identifier).toContainEqual({
      system: "urn:dicom:uid",
      value: `urn:oid:${s.studyInstanceUid}`,
    });
    const observations = await Promise.all(
      report!.result!.map((r) => fhir.repo.readReference<Observation>(r as never)),
    );
    expect(
      observations.map((o) => ({
        status: o.status,
        grade: o.valueCodeableConcept?.coding?.[0]?.code,
        site: o.bodySite?.coding?.[0]?.code,
        method: o.method?.coding?.[0]?.code,
      })),
    ).toEqual([
      { status: "preliminary", grade: "KL2", site: "6757004", method: "123110" },
      { status: "preliminary", grade: "KL3", site: "82169009", method: "123110" },
    ]);
    const device = await fhir.repo.readReference<Device>(observations[0]!.device as never);
    expect(device.identifier?.[0]?.value).toBe(MODEL);
    expect(observations[0]!.derivedFrom?.[0]?.reference).toBe(`ImagingStudy/${study.id}`);

    // HL7: one ORU^R01 2.5.1, ACKed, escaped where the patient data holds delimiters.
    const [oru, ...others] = messagesFor(s);
    expect(others).toEqual([]);
    expect(["MSH.9.1", "MSH.9.2", "MSH.9.3"].map((p) => oru!.get(p).toString())).toEqual([
      "ORU",
      "R01",
      "ORU_R01",
    ]);
    expect(oru!.get("MSH.12").toString()).toBe("2.5.1");
    expect(oru!.get("MSH.5").toString()).toBe("TESTRIS");
    expect(oru!.get("PID.5.1").toString()).toBe("Smith&Jones");
    expect(oru!.get("OBR.25").toString()).toBe("P");
    expect(oru!.toString()).toContain("Smith\\T\\Jones^Mary");
    expect(oru!.toString()).toContain("|ACC\\F\\77-A|");
    expect(obxOf(oru!, "KLG")).toEqual([
      { subId: "1", value: "KL2", status: "P", name: "Kellgren-Lawrence grade, right knee" },
      { subId: "2", value: "KL3", status: "P", name: "Kellgren-Lawrence grade, left knee" },
    ]);
    expect(obxOf(oru!, "59776-5").length).toBeGreaterThan(0);

    // The radiologist signs (as the review pages record it): right knee 3, left knee kept.
    const signer = {
      username: `rad-${Date.now()}`,
      password: "correct horse battery staple",
      displayName: "Doe^Jane",
    };
    const reviewId = await recordSignature(db, s, aiSr, signer, {
      right: 3,
      left: 3,
      findings: "Right knee: Kellgren–Lawrence grade 3.\nLeft knee: Kellgren–Lawrence grade 3.",
      impression: "Moderate osteoarthritis of both knees.",
    });
    await reportJob(s, reviewId);
    await whenSent(signedSrUid(reviewId), "the signed result everywhere");

    expect(fhir.rejected).toEqual([]);
    const [final, ...again] = await reportFor(s);
    expect(again).toEqual([]); // the same DiagnosticReport, updated
    expect(final).toMatchObject({
      id: report!.id,
      status: "final",
      resultsInterpreter: [{ display: "Jane Doe" }],
    });
    expect(final!.conclusion).toContain("Moderate osteoarthritis of both knees.");
    const signed = await Promise.all(
      final!.result!.map((r) => fhir.repo.readReference<Observation>(r as never)),
    );
    expect(signed.map((o) => [o.id, o.status, o.valueCodeableConcept?.coding?.[0]?.code])).toEqual([
      [observations[0]!.id, "final", "KL3"],
      [observations[1]!.id, "final", "KL3"],
    ]);
    const observationCount = (await fhir.repo.search({ resourceType: "Observation" })).entry
      ?.length;
    expect(observationCount).toBe(2);

    const [, signedOru, ...extra] = messagesFor(s);
    expect(extra).toEqual([]);
    expect(signedOru!.get("OBR.25").toString()).toBe("F");
    expect(signedOru!.get("OBR.32.1.2").toString()).toBe("Doe");
    expect(obxOf(signedOru!, "KLG").map((o) => [o.value, o.status])).toEqual([
      ["KL3", "F"],
      ["KL3", "F"],
    ]);
    expect(obxOf(signedOru!, "19005-8")[0]!.value).toBe("Moderate osteoarthritis of both knees.");
  }, 90_000);

  it("retries while the FHIR server and the HL7 peer are down, and delivers once they are back", async () => {
    await Promise.all([fhir.stop(), hl7.stop()]);
    const { s, aiSr } = await reported("ACC-DOWN");
    const failing = await deliveriesWhen(
      aiSr,
      (d) => (d.FHIR?.attempts ?? 0) >= 2 && (d.HL7?.attempts ?? 0) >= 2,
      20_000,
      "two failed attempts",
    );
    expect(failing.DICOM?.status).toBe("SENT");
    expect(failing.FHIR).toMatchObject({ status: "PENDING" });
    expect(failing.FHIR?.lastError).toMatch(/ECONNREFUSED/);
    expect(failing.HL7?.lastError).toMatch(/ECONNREFUSED/);
    await Promise.all([fhir.start(), hl7.start()]);
    const sent = await whenSent(aiSr, "the result once the peers are back");
    expect(sent.FHIR!.attempts).toBeGreaterThanOrEqual(3);
    expect(await reportFor(s)).toHaveLength(1);
    expect(messagesFor(s)).toHaveLength(1);
    const failed = await metrics.registry.getSingleMetricAsString(
      "kneegrade_result_deliveries_total",
    );
    expect(failed).toMatch(/channel="hl7",outcome="failed"} [1-9]/);
  }, 60_000);

  it("dead-letters an ORU the RIS answers AE after the last attempt, and redelivers it", async () => {
    const { s, aiSr, dead } = await deadLettered("AE", "ACC-AE", 30_000);
    expect(dead.HL7!.attempts).toBe(ATTEMPTS);
    expect(dead.HL7!.lastError).toMatch(/HL7 peer answered AE/);
    expect(dead.FHIR!.status).toBe("SENT");
    expect(dead.DICOM!.status).toBe("SENT");
    // Every attempt was the same message (same control ID), refused each time.
    const tries = messagesFor(s);
    expect(tries).toHaveLength(ATTEMPTS);
    expect(new Set(tries.map((m) => m.get("MSH.10").toString())).size).toBe(1);
    expect(
      await db.auditEvent.count({
        where: { event: "report.dead-letter", studyInstanceUid: s.studyInstanceUid },
      }),
    ).toBe(1);

    const status = await collectStatus(db, config);
    expect(status.deliveries.byChannel.HL7?.FAILED).toBe(1);
    expect(status.deliveries.byStatus.FAILED).toBe(1);

    hl7.answer = "AA";
    await redeliver(db, config, s.studyInstanceUid);
    await whenSent(aiSr, "the redelivered result");
    expect(messagesFor(s)).toHaveLength(ATTEMPTS + 1);
    expect(await reportFor(s)).toHaveLength(1); // sent again: the same resources, not new ones
    // One patient (the same MRN in every study) and one model: found, not created again.
    expect((await fhir.repo.search({ resourceType: "Patient" })).entry).toHaveLength(1);
    expect((await fhir.repo.search({ resourceType: "Device" })).entry).toHaveLength(1);
    expect((await fhir.repo.search({ resourceType: "ImagingStudy" })).entry).toHaveLength(3);
  }, 60_000);

  it("dead-letters an ORU the RIS rejects (AR) at once: no retry can change it", async () => {
    const { s, aiSr, dead } = await deadLettered("AR", "ACC-AR", 20_000, true);
    hl7.answer = "AA";
    expect(dead.HL7).toMatchObject({ attempts: 1 });
    expect(dead.HL7!.lastError).toMatch(/HL7 peer answered AR/);
    expect([dead.DICOM!.status, dead.FHIR!.status]).toEqual(["SENT", "SENT"]);
    expect(messagesFor(s)).toHaveLength(1);
    expect(
      await db.auditEvent.findFirst({
        where: { event: "report.dead-letter", sopInstanceUid: aiSr },
      }),
    ).toMatchObject({ details: { channel: "HL7", deliveries: 1 } });
  }, 30_000);

  it("sends a pending ORU once when the AI result's retry and the signature's job run at the same moment", async () => {
    const s = await seedGradedStudy(db, config, "ACC-RACE");
    const aiSr = reportUids(s.gradingJobId).aiSr;
    const ctx = {
      db,
      config,
      pacs: pacsPeer(config),
      log,
      outputs: resultOutputs(config),
    };
    const data = {
      schemaVersion: 1,
      studyId: s.studyId,
      studyInstanceUid: s.studyInstanceUid,
      revision: 1,
      gradingJobId: s.gradingJobId,
    };
    // The AI result's first attempt: the RIS answers AE, so its ORU stays pending.
    hl7.answer = "AE";
    try {
      await expect(processReportJob(data, 1, ctx)).rejects.toThrow(/HL7 peer answered AE/);
    } finally {
      hl7.answer = "AA";
    }
    expect((await deliveriesOf(aiSr)).HL7).toMatchObject({ status: "PENDING", attempts: 1 });
    const radiologist = {
      username: `rad-race-${Date.now()}`,
      password: "correct horse battery staple",
    };
    const reviewId = await recordSignature(
      db,
      s,
      aiSr,
      { ...radiologist, displayName: "Roe^Rick" },
      {
        right: 2,
        left: 3,
        findings: "Right knee: Kellgren–Lawrence grade 2.\nLeft knee: Kellgren–Lawrence grade 3.",
        impression: "Moderate osteoarthritis of the left knee.",
      },
    );
    const before = messagesFor(s).length;
    // A slow RIS widens the window in which both jobs see the AI's ORU pending.
    hl7.ackDelayMs = 700;
    try {
      await Promise.all([
        processReportJob(data, 2, ctx),
        processReportJob({ ...data, reviewId }, 1, ctx),
      ]);
    } finally {
      hl7.ackDelayMs = 0;
    }
    const sent = messagesFor(s).slice(before);
    // Each result once, the AI's (P) before the signature's (F): the RIS ends at the latest.
    expect(sent.map((m) => m.get("OBR.25").toString())).toEqual(["P", "F"]);
    expect(new Set(sent.map((m) => m.get("MSH.10").toString())).size).toBe(2);
    expect((await deliveriesOf(aiSr)).HL7).toMatchObject({ status: "SENT", attempts: 2 });
    expect((await deliveriesOf(signedSrUid(reviewId))).HL7).toMatchObject({
      status: "SENT",
      attempts: 1,
    });

    // The review page's signature line says where the signed result is: PACS, FHIR and HL7.
    const app = await buildReviewApp({ db, config, log, reportQueue: queue });
    try {
      const host = "review.example:8484";
      let cookies: Record<string, string> = {};
      const send = async (method: "GET" | "POST", url: string, body?: string) => {
        const r = await app.inject({
          method,
          url,
          payload: body,
          remoteAddress: "192.0.2.77",
          headers: {
            host,
            cookie: Object.entries(cookies)
              .map(([k, v]) => `${k}=${v}`)
              .join("; "),
            ...(body
              ? {
                  "content-type": "application/x-www-form-urlencoded",
                  origin: `http://${host}`,
                  "sec-fetch-site": "same-origin",
                }
              : {}),
          },
        });
        for (const c of r.cookies as { name: string; value: string }[]) {
          cookies = { ...cookies, [c.name]: c.value };
        }
        return r;
      };
      const loginPage = await send("GET", "/login");
      const csrf = /name="_csrf" value="([^"]+)"/.exec(loginPage.body)?.[1] ?? "";
      const login = await send(
        "POST",
        "/login",
        new URLSearchParams({ ...radiologist, _csrf: csrf, next: "/" }).toString(),
      );
      expect(login.statusCode, login.body).toBe(303);
      const page = await send("GET", `/studies/${s.studyInstanceUid}`);
      expect(page.statusCode).toBe(200);
      const history = /<ul class="history">(.*?)<\/ul>/s.exec(page.body)?.[1] ?? page.body;
      expect(history).toContain(
        `SR ${signedSrUid(reviewId)}: delivered to the PACS; FHIR delivered; HL7 delivered`,
      );
    } finally {
      await app.close();
    }
  }, 30_000);

  it("kneegrade serve --only reporter: /readyz includes the FHIR server and the HL7 peer", async () => {
    // A queue prefix of its own: this reporter takes none of the other tests' jobs.
    const own = await testConfig();
    const serve = await startServe(
      {
        ...configEnv(own),
        PACS_HOST: "127.0.0.1",
        PACS_PORT: String(orthanc.dicomPort),
        PACS_AET: "ORTHANC",
        FHIR_BASE_URL: fhir.baseUrl,
        FHIR_TOKEN: TOKEN,
        HL7_HOST: hl7.host,
        HL7_PORT: String(hl7.port),
      },
      ["--only", "reporter"],
    );
    try {
      const port = metricsPortOf(serve.output());
      expect((await readyz(port)).body).toMatchObject({
        ready: true,
        checks: { pacs: { ok: true }, fhir: { ok: true }, hl7: { ok: true } },
      });
      await hl7.stop();
      try {
        // The outputs' checks are cached for 15 s, like the PACS's C-ECHO.
        const down = await waitFor(
          async () => {
            const r = await readyz(port);
            return r.status === 503 ? r : undefined;
          },
          25_000,
          "/readyz to say the HL7 peer is down",
        );
        expect(down.body.checks.hl7).toMatchObject({ ok: false });
        expect(down.body.checks.hl7!.error).toMatch(/HL7 peer 127\.0\.0\.1:\d+ is not reachable/);
        expect(down.body.checks.fhir).toEqual({ ok: true });
      } finally {
        await hl7.start();
      }
      expect(serve.output()).toContain('"event":"reporter.fhir-ok"');
      expect(serve.output()).not.toContain(TOKEN);
    } finally {
      await kill(serve.child, "SIGTERM");
      await cleanupConfig(own);
    }
  }, 60_000);

  it("logs the deliveries, their failures and the dead letter without any patient data", () => {
    const text = logLines.join("");
    expect(text).toContain('"event":"report.delivery-failed"');
    expect(text).toContain('"event":"report.dead-letter"');
    expect(text).toContain("HL7 peer answered AE");
    expect(text).not.toMatch(/Smith|Jones|Mary|MRN-0042|19580412/);
  });
});
