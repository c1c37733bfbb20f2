/**
 * Header values beyond their VR's limits: the writers clamp them instead of throwing,
 * and dcmjs's own messages are redacted before they reach a log.
 */
import dcmjs from "dcmjs";
import { describe, expect, it } from "vitest";
import { writeSecondaryCapture } from "./capture.ts";
import { readStudyContext } from "./context.ts";
import { clampStudyContext } from "./dataset.ts";
import { dcmjsMessageWithoutValues } from "./dcmjs-log.ts";
import { writeBasicTextSr, writeComprehensiveSr } from "./sr.ts";
import { dciodvfy, fixture, fixtureWithImages, tempFile } from "./test-support.ts";

const LONG_NAME = "Quixotebrandtfeld-Oyelaran^Wilhelmina Perpetua Anastasia^Maria^Dr.^Jr.";
const HOSTILE = {
  patientName: LONG_NAME,
  patientId: "P".repeat(80),
  accessionNumber: "ACCESSION-NUMBER-TOO-LONG-123",
  studyId: "S".repeat(20),
  studyDate: "2026112712",
  studyTime: "10:15:00",
  patientBirthDate: "1956-03-12",
  referringPhysicianName: `${LONG_NAME}^Sr.`,
  studyDescription: "D".repeat(70),
};

describe("the writers with header values beyond their VR's limits", () => {
  it("write SR, SC and text SR within the limits, the patient's name truncated at 64 bytes", async () => {
    const input = await fixtureWithImages();
    input.context = { ...input.context, ...HOSTILE };
    const sr = writeComprehensiveSr(input);
    const { context } = readStudyContext(sr);
    expect(context.patientName).toBe(LONG_NAME.slice(0, 64).replace(/[\s^]+$/, ""));
    expect(LONG_NAME.startsWith(context.patientName!)).toBe(true);
    expect(context.patientId).toBe("P".repeat(64));
    expect(context.accessionNumber).toBe("ACCESSION-NUMBER");
    expect(context.studyId).toBe("S".repeat(16));
    expect(context.studyDate).toBeUndefined();
    expect(context.studyTime).toBeUndefined();
    expect(context.patientBirthDate).toBeUndefined();
    const check = dciodvfy(await tempFile("hostile-sr.dcm", sr));
    expect(check.errors).toEqual([]);
    for (const bytes of [await writeSecondaryCapture(input), writeBasicTextSr(input)]) {
      expect(readStudyContext(bytes).context.patientName).toBe(context.patientName);
    }
  });

  it("clampStudyContext notes what changed without the values, and leaves a valid context alone", () => {
    const { context, notes } = clampStudyContext({
      ...fixture().context,
      ...HOSTILE,
      patientSex: "MALEMALEMALEMALEMALE",
    });
    expect(context.studyDate).toBeUndefined();
    expect(notes.map((n) => n.keyword).sort()).toEqual([
      "AccessionNumber",
      "PatientBirthDate",
      "PatientID",
      "PatientName",
      "PatientSex",
      "ReferringPhysicianName",
      "StudyDate",
      "StudyDescription",
      "StudyID",
      "StudyTime",
    ]);
    expect(JSON.stringify(notes)).not.toMatch(/Quixote|PPPP|ACCESSION|2026112712|MALE|DDDD/);
    const valid = fixture().context;
    expect(clampStudyContext(valid)).toEqual({ context: valid, notes: [] });
  });
});

describe("dcmjsMessageWithoutValues", () => {
  it("keeps what dcmjs did and to which attribute, never the value it quotes", () => {
    expect(
      dcmjsMessageWithoutValues(
        `Truncating value ${LONG_NAME} of StudyDate because it is longer than 18`,
      ),
    ).toBe("dcmjs truncated a value of StudyDate to 18 characters (value withheld)");
    expect(
      dcmjsMessageWithoutValues(
        `Value exceeds max length, vr: PN, value: ${LONG_NAME}, length: 70`,
      ),
    ).toBe("dcmjs: a value of VR PN exceeds its maximum length (value withheld)");
    expect(dcmjsMessageWithoutValues(`Unknown name in dataset Foo : ${LONG_NAME}`)).toBe(
      "dcmjs: unknown attribute name Foo in a data set (value withheld)",
    );
    expect(dcmjsMessageWithoutValues(`something new about ${LONG_NAME}`)).not.toContain("Quixote");
  });

  it("covers the messages dcmjs really prints", () => {
    // dcmjs's own wording, as it builds it: a change of wording must be noticed here.
    const seen: string[] = [];
    const log = dcmjs.log;
    const previous = log.methodFactory;
    log.methodFactory =
      () =>
      (...args: unknown[]) =>
        seen.push(args.map(String).join(" "));
    log.setLevel("info");
    try {
      dcmjs.data.DicomMetaDictionary.denaturalizeDataset({ PatientSex: "MALEMALEMALEMALEMALE" });
      const dict = new dcmjs.data.DicomDict({});
      dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset({ PatientName: LONG_NAME });
      expect(() => dict.write()).toThrow(/Value exceeds max length, vr: PN/);
    } finally {
      log.methodFactory = previous;
      log.setLevel("warn");
    }
    expect(seen.length).toBeGreaterThan(0);
    const redacted = seen.map(dcmjsMessageWithoutValues);
    expect(redacted[0]).toBe(
      "dcmjs truncated a value of PatientSex to 16 characters (value withheld)",
    );
    expect(redacted.join("\n")).not.toMatch(/MALEMALE|Quixote/);
  });
});
