/**
 * Reads the patient/study attributes of a graded image (header only, dicom-parser), decoding its
 * text in the image's Specific Character Set so the reports (always UTF-8, ISO_IR 192) carry the
 * same names.
 */
import { textDecoder } from "@kneegrade/dicom";
import dicomParser from "dicom-parser";
import type { SourceImage, StudyContext } from "./types.ts";

const TAGS = {
  specificCharacterSet: "x00080005",
  sopClassUid: "x00080016",
  sopInstanceUid: "x00080018",
  studyDate: "x00080020",
  studyTime: "x00080030",
  accessionNumber: "x00080050",
  referringPhysicianName: "x00080090",
  studyDescription: "x00081030",
  patientName: "x00100010",
  patientId: "x00100020",
  issuerOfPatientId: "x00100021",
  patientBirthDate: "x00100030",
  patientSex: "x00100040",
  studyInstanceUid: "x0020000d",
  seriesInstanceUid: "x0020000e",
  studyId: "x00200010",
} as const;

/** The attributes whose VR may hold characters beyond ASCII (PN, LO, SH): decoded with the charset. */
const ENCODED: ReadonlySet<string> = new Set([
  "accessionNumber",
  "referringPhysicianName",
  "studyDescription",
  "patientName",
  "patientId",
  "issuerOfPatientId",
  "studyId",
]);

/** Reads the StudyContext and SourceImage of one Part 10 file (dicom-parser, header only). */
export function readStudyContext(part10: Uint8Array): {
  context: StudyContext;
  image: SourceImage;
} {
  let ds: dicomParser.DataSet;
  try {
    ds = dicomParser.parseDicom(part10, { untilTag: "x7fe00010" });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot read the DICOM header: ${message}`);
  }
  const decode = textDecoder(ds.string(TAGS.specificCharacterSet));
  const read = (key: keyof typeof TAGS): string | undefined => {
    const element = ds.elements[TAGS[key]];
    if (!element || element.length === 0) return undefined;
    const bytes = ds.byteArray.subarray(element.dataOffset, element.dataOffset + element.length);
    const text = ENCODED.has(key) ? decode(bytes) : Buffer.from(bytes).toString("latin1");
    // Values are padded with a space (text) or NUL (UIDs) to an even length.
    const trimmed = text.replace(/[\0 ]+$/, "").replace(/^ +/, "");
    return trimmed === "" ? undefined : trimmed;
  };
  const required = (key: keyof typeof TAGS, name: string): string => {
    const value = read(key);
    if (value === undefined) throw new Error(`missing ${name}`);
    return value;
  };
  const context: StudyContext = {
    studyInstanceUid: required("studyInstanceUid", "StudyInstanceUID (0020,000D)"),
  };
  for (const key of [
    "patientName",
    "patientId",
    "issuerOfPatientId",
    "patientBirthDate",
    "patientSex",
    "studyDate",
    "studyTime",
    "studyId",
    "accessionNumber",
    "referringPhysicianName",
    "studyDescription",
  ] as const) {
    const value = read(key);
    if (value !== undefined) context[key] = value;
  }
  return {
    context,
    image: {
      sopClassUid: required("sopClassUid", "SOPClassUID (0008,0016)"),
      sopInstanceUid: required("sopInstanceUid", "SOPInstanceUID (0008,0018)"),
      seriesInstanceUid: required("seriesInstanceUid", "SeriesInstanceUID (0020,000E)"),
    },
  };
}
