import { spawnSync } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readStudyContext } from "./context.ts";
import { PYTHON } from "./test-support.ts";
import { derivedUid, isValidUid } from "./uids.ts";

/** Writes a small DX header with pydicom, names encoded in `charset`. */
async function dxFile(charset: string, names: Record<string, string>, omit: string[] = []) {
  const dir = await mkdtemp(join(tmpdir(), "kneegrade-reports-"));
  const path = join(dir, "dx.dcm");
  const script = `
import json, sys, pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
meta = FileMetaDataset()
meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds = Dataset()
ds.file_meta = meta
ds.SpecificCharacterSet = sys.argv[2].split("\\\\")
ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
ds.SOPInstanceUID = "1.2.3.4.5"
ds.StudyInstanceUID = "1.2.3.4"
ds.SeriesInstanceUID = "1.2.3.4.1"
ds.StudyDate = "20261127"
ds.StudyTime = "101500.123"
ds.AccessionNumber = "A1 "
ds.PatientID = "P1"
ds.PatientBirthDate = ""
ds.PatientSex = "F"
ds.StudyID = "9"
for k, v in json.loads(sys.argv[3]).items():
    setattr(ds, k, v)
for k in json.loads(sys.argv[4]):
    delattr(ds, k)
ds.is_little_endian = True
ds.is_implicit_VR = False
ds.save_as(sys.argv[1], write_like_original=False)
`;
  const r = spawnSync(
    PYTHON,
    ["-c", script, path, charset, JSON.stringify(names), JSON.stringify(omit)],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  return new Uint8Array(await readFile(path));
}

describe("readStudyContext", () => {
  it("reads the study context and the image, decoding Latin-1 names", async () => {
    const bytes = await dxFile("ISO_IR 100", {
      PatientName: "Müller^Jörg",
      ReferringPhysicianName: "Weiß^Anna",
      StudyDescription: "Knie beidseits",
    });
    expect(readStudyContext(bytes)).toEqual({
      context: {
        studyInstanceUid: "1.2.3.4",
        patientName: "Müller^Jörg",
        patientId: "P1",
        patientSex: "F",
        studyDate: "20261127",
        studyTime: "101500.123",
        studyId: "9",
        accessionNumber: "A1",
        referringPhysicianName: "Weiß^Anna",
        studyDescription: "Knie beidseits",
      },
      image: {
        sopClassUid: "1.2.840.10008.5.1.4.1.1.1.1",
        sopInstanceUid: "1.2.3.4.5",
        seriesInstanceUid: "1.2.3.4.1",
      },
    });
  });

  it("decodes UTF-8, Cyrillic and ISO 2022 Japanese names", async () => {
    const utf8 = await dxFile("ISO_IR 192", { PatientName: "Łukasz^Żółć" });
    expect(readStudyContext(utf8).context.patientName).toBe("Łukasz^Żółć");
    const cyrillic = await dxFile("ISO_IR 144", { PatientName: "Иванов^Пётр" });
    expect(readStudyContext(cyrillic).context.patientName).toBe("Иванов^Пётр");
    const japanese = await dxFile("\\ISO 2022 IR 87", { PatientName: "Yamada^Tarou=山田^太郎" });
    expect(readStudyContext(japanese).context.patientName).toBe("Yamada^Tarou=山田^太郎");
  });

  it("refuses a file without a Study Instance UID, and a file that is not DICOM", async () => {
    const bytes = await dxFile("ISO_IR 100", {}, ["StudyInstanceUID"]);
    expect(() => readStudyContext(bytes)).toThrow(/StudyInstanceUID/);
    expect(() => readStudyContext(new Uint8Array(300))).toThrow(/cannot read the DICOM header/);
  });
});

describe("derivedUid", () => {
  it("is a valid 2.25 UID, the same for the same seed and label, different otherwise", () => {
    const seed = `2.25.${"9".repeat(39)}`;
    const a = derivedUid(seed, "basic-text-sr");
    expect(a).toMatch(/^2\.25\.[1-9][0-9]*$/);
    expect(a.length).toBeLessThanOrEqual(64);
    expect(isValidUid(a)).toBe(true);
    expect(derivedUid(seed, "basic-text-sr")).toBe(a);
    expect(derivedUid(seed, "secondary-capture")).not.toBe(a);
    expect(derivedUid(`${seed}1`, "basic-text-sr")).not.toBe(a);
    expect(isValidUid("1.02.3")).toBe(false);
  });
});
