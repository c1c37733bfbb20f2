/**
 * Report objects that cannot be encoded fail at once, with a fixed message; dcmjs's console output
 * reaches the structured log without the values it quotes.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { createLogger } from "@kneegrade/log";
import { UnrecoverableError } from "bullmq";
import dcmjs from "dcmjs";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fixtureWithImages } from "../../dicom-writers/src/test-support.ts";
import { routeDcmjsLog } from "./dcmjs-log.ts";
import { encodeReportObject, ReportObjectError, writeReportObjects } from "./report.ts";

const NAME = "Quixotebrandtfeld-Oyelaran^Wilhelmina Perpetua Anastasia^Maria^Dr.^Jr.";

/** A logger at debug level whose lines land in `lines`. */
function capturing() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { log: createLogger("test", "debug", sink), lines };
}

/** dcmjs encoding a Patient Name it refuses: its error quotes the name. */
function refusedByDcmjs(): Uint8Array {
  const dict = new dcmjs.data.DicomDict({});
  dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset({ PatientName: NAME });
  return new Uint8Array(dict.write());
}

afterEach(() => vi.restoreAllMocks());

describe("encodeReportObject", () => {
  it("turns an encoder's error into an unrecoverable one with a code and the study UID only", async () => {
    expect(refusedByDcmjs).toThrow(/Quixote/); // what dcmjs would have put in the job's failure
    const failure = await encodeReportObject("sr", "1.2.826.0.1.3680043.8.498.1", refusedByDcmjs)
      .then(() => undefined)
      .catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ReportObjectError);
    expect(failure).toBeInstanceOf(UnrecoverableError);
    const error = failure as ReportObjectError;
    // BullMQ (and isFinalFailure, across processes) recognise it by its name: no retry.
    expect(error.name).toBe("UnrecoverableError");
    expect(error.code).toBe("REPORT_OBJECT_INVALID");
    expect(error.message).toBe(
      "REPORT_OBJECT_INVALID: the sr of study 1.2.826.0.1.3680043.8.498.1 could not be encoded (a PN value the DICOM writer refuses)",
    );
    expect(`${error.stack}`).not.toMatch(/Quixote|Wilhelmina/);
    expect(error.cause).toBeUndefined();
  });

  it("fails writeReportObjects at once when an object cannot be encoded (a corrupt crop)", async () => {
    const input = await fixtureWithImages();
    input.knees[0]!.cropPng = new Uint8Array([1, 2, 3, 4]);
    const dir = await mkdtemp(join(tmpdir(), "kneegrade-permanent-"));
    try {
      await expect(
        writeReportObjects(input, dir, { secondaryCapture: true, basicTextSr: false }),
      ).rejects.toMatchObject({
        name: "UnrecoverableError",
        code: "REPORT_OBJECT_INVALID",
        message: `REPORT_OBJECT_INVALID: the sc of study ${input.context.studyInstanceUid} could not be encoded`,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("routeDcmjsLog", () => {
  it("sends dcmjs's warnings to the structured log without the values they quote", () => {
    const console = vi.spyOn(globalThis.console, "warn");
    const { log, lines } = capturing();
    routeDcmjsLog(log);
    // dcmjs truncates an over-long CS and says so, quoting it.
    dcmjs.data.DicomMetaDictionary.denaturalizeDataset({ PatientSex: NAME.slice(0, 20) });
    dcmjs.log.warn(`Truncating value ${NAME} of PatientName because it is longer than 64`);
    dcmjs.log.getLogger("validation.dcmjs").error("Invalid vr type XX - using UN");
    expect(console).not.toHaveBeenCalled();
    const entries = lines.map((l) => JSON.parse(l) as { event: string; msg: string });
    expect(entries).toEqual([
      expect.objectContaining({
        event: "dcmjs.log",
        msg: "dcmjs truncated a value of PatientSex to 16 characters (value withheld)",
      }),
      expect.objectContaining({
        event: "dcmjs.log",
        msg: "dcmjs truncated a value of PatientName to 64 characters (value withheld)",
      }),
      expect.objectContaining({ event: "dcmjs.log", msg: "Invalid vr type XX - using UN" }),
    ]);
    expect(lines.join("\n")).not.toMatch(/Quixote|Wilhelmina/);
  });
});
