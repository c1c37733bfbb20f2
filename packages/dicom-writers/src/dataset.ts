/**
 * What every object written here shares: Patient, General Study, series and SOP Common
 * attributes, dates, coded concepts and the Part 10 framing (dcmjs, Explicit VR Little Endian).
 */
import {
  clampAttribute,
  type HeaderKeyword,
  IMPLEMENTATION_CLASS_UID,
  IMPLEMENTATION_VERSION_NAME,
  type LimitNote,
  truncateUtf8,
} from "@kneegrade/dicom";
import dcmjs from "dcmjs";
import { CODES, CODING_SCHEMES } from "./codes.ts";
import type { Code, ReportInput, SourceImage, StudyContext } from "./types.ts";

export const EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1";

/** A naturalized dcmjs data set (keyword → value). */
export type Dataset = Record<string, unknown>;

/** Code Sequence Macro item. */
export type CodeSequenceItem = {
  CodeValue: string;
  CodingSchemeDesignator: string;
  CodeMeaning: string;
};

export function codeItem(code: Code): CodeSequenceItem {
  return {
    CodeValue: code.value,
    CodingSchemeDesignator: code.scheme,
    CodeMeaning: code.meaning,
  };
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** DA, TM and the UTC offset of `date` in the local time zone (DICOM dates are local). */
export function dicomDateTime(date: Date): { date: string; time: string; offset: string } {
  const offsetMin = -date.getTimezoneOffset();
  const sign = offsetMin < 0 ? "-" : "+";
  const abs = Math.abs(offsetMin);
  return {
    date: `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}`,
    time: `${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`,
    offset: `${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`,
  };
}

/**
 * Truncates a value to a VR's maximum length, counted in UTF-8 bytes (PS3.5 counts characters,
 * but validators such as dciodvfy count bytes: this satisfies both), never inside a character.
 */
export function clip(value: string | undefined, max: number): string {
  return value === undefined ? "" : truncateUtf8(value, max);
}

/** The context's attributes by the keyword their VR limits are kept under (@kneegrade/dicom). */
const CONTEXT_KEYWORDS = {
  patientName: "PatientName",
  patientId: "PatientID",
  issuerOfPatientId: "IssuerOfPatientID",
  patientBirthDate: "PatientBirthDate",
  patientSex: "PatientSex",
  studyDate: "StudyDate",
  studyTime: "StudyTime",
  studyId: "StudyID",
  accessionNumber: "AccessionNumber",
  referringPhysicianName: "ReferringPhysicianName",
  studyDescription: "StudyDescription",
} as const satisfies Record<Exclude<keyof StudyContext, "studyInstanceUid">, HeaderKeyword>;

/**
 * The study context within the DICOM limits of each attribute's VR (the rules ingest applies,
 * limits.ts): a header may carry a 70-character Patient Name or a 10-character StudyDate, which
 * the DICOM writer refuses. Returns the notes of what changed (tags and rules, no values).
 */
export function clampStudyContext(context: StudyContext): {
  context: StudyContext;
  notes: LimitNote[];
} {
  const out: StudyContext = { studyInstanceUid: context.studyInstanceUid };
  const notes: LimitNote[] = [];
  for (const [key, keyword] of Object.entries(CONTEXT_KEYWORDS) as [
    keyof typeof CONTEXT_KEYWORDS,
    HeaderKeyword,
  ][]) {
    const { value, note } = clampAttribute(keyword, context[key]);
    if (note) notes.push(note);
    if (value !== undefined) out[key] = value;
  }
  return { context: out, notes };
}

/** Patient and General Study modules: copied from the graded images' context. */
export function patientAndStudy(input: ReportInput): Dataset {
  // Clamped here as well as where the context is built: whatever a caller passes, the writer
  // never meets a value it refuses (it would throw with the value in its message).
  const c = clampStudyContext(input.context).context;
  const ds: Dataset = {
    PatientName: c.patientName ?? "",
    PatientID: c.patientId ?? "",
    PatientBirthDate: c.patientBirthDate ?? "",
    PatientSex: c.patientSex ?? "",
    StudyInstanceUID: c.studyInstanceUid,
    StudyDate: c.studyDate ?? "",
    StudyTime: c.studyTime ?? "",
    ReferringPhysicianName: c.referringPhysicianName ?? "",
    StudyID: c.studyId ?? "",
    AccessionNumber: c.accessionNumber ?? "",
  };
  if (c.issuerOfPatientId) ds.IssuerOfPatientID = c.issuerOfPatientId;
  if (c.studyDescription) ds.StudyDescription = c.studyDescription;
  return ds;
}

/** The algorithm as Contributing Equipment (0018,A001): it processed the images into this object. */
export function contributingEquipment(input: ReportInput): Dataset[] {
  const { date, time, offset } = dicomDateTime(input.contentDateTime);
  const item: Dataset = {
    PurposeOfReferenceCodeSequence: [codeItem(CODES.processingEquipment)],
    Manufacturer: clip(input.algorithm.manufacturer, 64),
    ManufacturerModelName: clip(input.algorithm.name, 64),
    SoftwareVersions: clip(input.algorithm.softwareVersion, 64),
    ContributionDateTime: `${date}${time}${offset}`,
    ContributionDescription: clip(
      `AI grading, model ${input.algorithm.version} (${input.algorithm.modelStatus})`,
      64,
    ),
  };
  if (input.institutionName) item.InstitutionName = clip(input.institutionName, 64);
  return [item];
}

/** The coding scheme designators a data set uses, anywhere in its sequences. */
export function usedCodingSchemes(dataset: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(dataset)) {
    for (const item of dataset) usedCodingSchemes(item, found);
  } else if (dataset !== null && typeof dataset === "object") {
    for (const [key, value] of Object.entries(dataset)) {
      if (key === "CodingSchemeDesignator" && typeof value === "string") found.add(value);
      else if (typeof value === "object") usedCodingSchemes(value, found);
    }
  }
  return found;
}

/** Coding Scheme Identification Sequence (0008,0110): the schemes `dataset` uses. */
export function codingSchemeIdentification(dataset: Dataset): Dataset[] {
  const used = usedCodingSchemes(dataset);
  return CODING_SCHEMES.filter((s) => used.has(s.designator)).map((s) => {
    const item: Dataset = { CodingSchemeDesignator: s.designator };
    if (s.registry) item.CodingSchemeRegistry = s.registry;
    if (s.uid) item.CodingSchemeUID = s.uid;
    item.CodingSchemeName = s.name;
    if (s.version) item.CodingSchemeVersion = s.version;
    if (s.responsibleOrganization) {
      item.CodingSchemeResponsibleOrganization = s.responsibleOrganization;
    }
    return item;
  });
}

/**
 * Whether an image can be referenced: an SR must list every image it references in its evidence,
 * which needs the Series Instance UID. (The reporter passes "" when an image's header is gone.)
 */
export const referable = (image: SourceImage) => image.seriesInstanceUid !== "";

/** The distinct referable source images (graded, not graded knees, ungraded), in input order. */
export function sourceImages(input: ReportInput): SourceImage[] {
  const seen = new Map<string, SourceImage>();
  for (const s of [
    ...input.knees.map((k) => k.source),
    ...(input.notGraded ?? []).map((k) => k.source),
    ...input.ungraded.map((u) => u.source),
  ]) {
    if (referable(s) && !seen.has(s.sopInstanceUid)) seen.set(s.sopInstanceUid, s);
  }
  return [...seen.values()];
}

/** Hierarchical references (series → instances), as in (0040,A375)'s Referenced Series Sequence. */
export function referencesBySeries(images: SourceImage[]): Dataset[] {
  const series = new Map<string, SourceImage[]>();
  for (const image of images) {
    const list = series.get(image.seriesInstanceUid) ?? [];
    list.push(image);
    series.set(image.seriesInstanceUid, list);
  }
  return [...series.entries()].map(([uid, list]) => ({
    SeriesInstanceUID: uid,
    ReferencedSOPSequence: list.map((i) => ({
      ReferencedSOPClassUID: i.sopClassUid,
      ReferencedSOPInstanceUID: i.sopInstanceUid,
    })),
  }));
}

/** Writes a naturalized data set as a Part 10 file, Explicit VR Little Endian. */
export function writePart10(dataset: Dataset, vrMap: Record<string, string> = {}): Uint8Array {
  const { DicomDict, DicomMetaDictionary } = dcmjs.data;
  const sopClassUid = dataset.SOPClassUID as string;
  const sopInstanceUid = dataset.SOPInstanceUID as string;
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: sopClassUid,
    MediaStorageSOPInstanceUID: sopInstanceUid,
    TransferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: IMPLEMENTATION_VERSION_NAME,
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset({ ...dataset, _vrMap: vrMap });
  return new Uint8Array(dict.write());
}
