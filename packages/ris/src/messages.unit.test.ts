/**
 * The ORU^R01 and the FHIR Bundle of one result, without peers (tests/integration/ris.test.ts sends
 * them to real ones): HL7 delimiters anywhere in the text survive a round trip through an HL7
 * parser, statuses map P/F/C, and a study without a Patient ID still makes a usable Bundle.
 */
import { kneeFindingCode } from "@kneegrade/dicom-writers";
import type { DiagnosticReport, Observation } from "@medplum/fhirtypes";
import { Message } from "node-hl7-client";
import { describe, expect, it } from "vitest";
import { fhirTransaction, humanName } from "./fhir.ts";
import { oruR01 } from "./hl7.ts";
import type { StudyResult } from "./result.ts";

const IMAGE = {
  sopClassUid: "1.2.840.10008.5.1.4.1.1.1.1",
  sopInstanceUid: "1.2.3.4.3",
  seriesInstanceUid: "1.2.3.4.2",
};

function result(overrides: Partial<StudyResult> = {}): StudyResult {
  return {
    status: "preliminary",
    reportSopInstanceUid: "2.25.1",
    aiSrSopInstanceUid: "2.25.1",
    issued: new Date("2026-12-01T09:41:07Z"),
    context: {
      studyInstanceUid: "1.2.3.4.1",
      patientName: "O'Neil&Sons^Ann~Marie^^Dr^",
      patientId: "MRN\\7|8",
      patientSex: "F",
      studyDate: "20261201",
      accessionNumber: "A^1&2",
    },
    knees: [
      {
        laterality: "R",
        aiGrade: 1,
        probabilities: [0.1, 0.6, 0.1, 0.1, 0.1],
        trackingUid: "2.25.11",
        source: IMAGE,
      },
      {
        laterality: "L",
        aiGrade: 4,
        probabilities: [0, 0, 0, 0.1, 0.9],
        trackingUid: "2.25.12",
        source: IMAGE,
      },
    ],
    images: [{ ...IMAGE, modality: "CR" }],
    findings: "Right knee | grade 1 ^ doubtful ~ see \\ note & more.\nLeft knee: grade 4.",
    impression: "Severe osteoarthritis of the left knee.",
    algorithm: {
      name: "kneegrade PIM ensemble (Kellgren-Lawrence)",
      version: "kl-1-abc",
      modelFingerprint: "abc",
      modelStatus: "candidate",
      manufacturer: "kneegrade",
      softwareVersion: "0.1.0",
    },
    deviceObserverUid: "2.25.9",
    ...overrides,
  };
}

const OPTIONS = { sendingApplication: "KNEEGRADE", receivingApplication: "RIS", controlId: "C1" };

describe("oruR01", () => {
  it("escapes HL7 delimiters so that a parser reads back every value as written", () => {
    const text = oruR01(result(), OPTIONS);
    expect(text.split("\r").map((l) => l.slice(0, 3))).toEqual([
      "MSH",
      "PID",
      "OBR",
      "OBX",
      "OBX",
      "OBX",
      "OBX",
      "OBX",
    ]);
    const parsed = new Message({ text });
    expect(parsed.get("PID.3.1").toString()).toBe("MRN\\7|8");
    expect(parsed.get("PID.5.1").toString()).toBe("O'Neil&Sons");
    expect(parsed.get("PID.5.2").toString()).toBe("Ann~Marie");
    expect(parsed.get("PID.5.5").toString()).toBe("Dr");
    expect(parsed.get("OBR.3.1").toString()).toBe("A^1&2");
    const lines: string[] = [];
    parsed.get("OBX").forEach((obx) => {
      if (obx.get("3.1").toString() === "59776-5") lines.push(obx.get("5").toString());
    });
    expect(lines).toEqual([
      "Right knee | grade 1 ^ doubtful ~ see \\ note & more.",
      "Left knee: grade 4.",
    ]);
  });

  it("says P for the AI's result, F for a signature and C for an amendment", () => {
    const signed = (status: StudyResult["status"]) =>
      new Message({
        text: oruR01(
          result({
            status,
            radiologist: { name: "Doe^Jane", organisation: "X" },
            knees: result().knees.map((k, i) => ({
              ...k,
              decision: i === 0 ? { grade: 2 } : { grade: null, notGradableReason: "rotated" },
            })),
          }),
          OPTIONS,
        ),
      });
    const p = new Message({ text: oruR01(result(), OPTIONS) });
    expect(p.get("OBR.25").toString()).toBe("P");
    const f = signed("final");
    expect(f.get("OBR.25").toString()).toBe("F");
    const knees: string[][] = [];
    f.get("OBX").forEach((obx) => {
      if (obx.get("3.1").toString() === "KLG")
        knees.push([obx.get("5.1").toString(), obx.get("11").toString()]);
    });
    expect(knees).toEqual([
      ["KL2", "F"],
      ["", "X"],
    ]);
    expect(signed("amended").get("OBR.25").toString()).toBe("C");
  });
});

describe("fhirTransaction", () => {
  it("references the study by identifier when the images carry no Patient ID", () => {
    const { patientId: _, ...context } = result().context;
    const bundle = fhirTransaction(result({ context }), { patientIdSystem: "urn:x" });
    const types = bundle.entry?.map((e) => e.resource?.resourceType);
    expect(types).toEqual(["Device", "Observation", "Observation", "DiagnosticReport"]);
    const report = bundle.entry?.at(-1)?.resource as DiagnosticReport;
    expect(report.subject).toBeUndefined();
    expect(report.imagingStudy?.[0]).toMatchObject({
      type: "ImagingStudy",
      identifier: { system: "urn:dicom:uid", value: "urn:oid:1.2.3.4.1" },
    });
    const observation = bundle.entry?.[1]?.resource as Observation;
    expect(observation.derivedFrom?.[0]?.identifier?.value).toBe("urn:oid:1.2.3.4.1");
    expect(bundle.entry?.[1]?.request?.url).toBe(
      "Observation?identifier=urn%3Adicom%3Auid|urn%3Aoid%3A2.25.11",
    );
  });

  it("escapes FHIR search separators in the conditional identifiers", () => {
    const bundle = fhirTransaction(result(), { patientIdSystem: "urn:x" });
    expect(bundle.entry?.[0]?.request?.ifNoneExist).toBe(
      `identifier=urn%3Ax|${encodeURIComponent("MRN\\\\7\\|8")}`,
    );
  });

  it("maps a DICOM person name", () => {
    expect(humanName("Doe^Jane^Q^Dr^Jr")).toEqual({
      text: "Dr Jane Q Doe Jr",
      family: "Doe",
      given: ["Jane", "Q"],
      prefix: ["Dr"],
      suffix: ["Jr"],
    });
  });
});

describe("the grade as a RIS reads it", () => {
  it("is the plain KL0–KL4 code in FHIR and HL7 alike, not the SR's lateralised finding code", () => {
    // The SR's Finding is pre-coordinated for viewers (e.g. AIKL1R); a RIS gets the grade alone,
    // the side in bodySite / OBX-3 and the reader in the status and method.
    const r = result();
    const fhirGrades = fhirTransaction(r, { patientIdSystem: "urn:x" })
      .entry?.filter((e) => e.resource?.resourceType === "Observation")
      .map((e) => {
        const o = e.resource as Observation;
        return [
          o.valueCodeableConcept?.coding?.[0]?.system,
          o.valueCodeableConcept?.coding?.[0]?.code,
          o.bodySite?.coding?.[0]?.code,
        ];
      });
    expect(fhirGrades).toEqual([
      ["urn:kneegrade:codes", "KL1", "6757004"],
      ["urn:kneegrade:codes", "KL4", "82169009"],
    ]);
    const hl7Grades: string[][] = [];
    new Message({ text: oruR01(r, OPTIONS) }).get("OBX").forEach((obx) => {
      if (obx.get("3.1").toString() === "KLG") {
        hl7Grades.push([
          obx.get("5.3").toString(),
          obx.get("5.1").toString(),
          obx.get("3.2").toString(),
        ]);
      }
    });
    expect(hl7Grades).toEqual([
      ["99KNEEGRADE", "KL1", "Kellgren-Lawrence grade, right knee"],
      ["99KNEEGRADE", "KL4", "Kellgren-Lawrence grade, left knee"],
    ]);
    const srFinding = kneeFindingCode(1, "R", "ai").value;
    expect(srFinding).toBe("AIKL1R");
    expect(fhirGrades?.flat()).not.toContain(srFinding);
    expect(hl7Grades.flat()).not.toContain(srFinding);
  });
});
