/**
 * Coded concepts the report objects use. Every standard concept below was looked up in the DICOM
 * concept dictionary that pydicom 2.3 ships (`pydicom.sr.codedict.codes`), except (C0034375, UMLS,
 * "Qualitative Evaluations"), the TID 1500 container for free-text evaluations, which that
 * dictionary lacks (its UMLS part is small) but PS3.16 TID 1500 names. The Kellgren–Lawrence grade
 * has no standard concept: it uses the private scheme 99KNEEGRADE, declared in every object's
 * Coding Scheme Identification Sequence (0008,0110).
 */
import type { Code } from "./types.ts";

const c = (value: string, scheme: string, meaning: string): Code => ({ value, scheme, meaning });

/** The private coding scheme of the Kellgren–Lawrence concepts ("99" prefix: PS3.16 8.2). */
export const KL_CODING_SCHEME = {
  designator: "99KNEEGRADE",
  name: "kneegrade Kellgren-Lawrence grading concepts",
  version: "1",
  responsibleOrganization: "kneegrade project",
} as const;

const KL = KL_CODING_SCHEME.designator;

/** The grades' short descriptions, as in Kellgren & Lawrence (1957). */
export const KL_GRADE_WORDS = ["none", "doubtful", "minimal", "moderate", "severe"] as const;

export const CODES = {
  // Document titles / containers.
  imagingMeasurementReport: c("126000", "DCM", "Imaging Measurement Report"),
  imagingMeasurements: c("126010", "DCM", "Imaging Measurements"),
  measurementGroup: c("125007", "DCM", "Measurement Group"),
  imageLibrary: c("111028", "DCM", "Image Library"),
  imageLibraryGroup: c("126200", "DCM", "Image Library Group"),
  qualitativeEvaluations: c("C0034375", "UMLS", "Qualitative Evaluations"),
  diagnosticImagingReport: c("18748-4", "LN", "Diagnostic Imaging Report"),
  findings: c("59776-5", "LN", "Findings"),
  impressions: c("19005-8", "LN", "Impressions"),
  finding: c("121071", "DCM", "Finding"),
  impression: c("121073", "DCM", "Impression"),
  // TID 1204 language.
  language: c("121049", "DCM", "Language of Content Item and Descendants"),
  english: c("en", "RFC5646", "English"),
  // TID 1002/1004 device observer.
  observerType: c("121005", "DCM", "Observer Type"),
  device: c("121007", "DCM", "Device"),
  deviceObserverUid: c("121012", "DCM", "Device Observer UID"),
  deviceObserverName: c("121013", "DCM", "Device Observer Name"),
  deviceObserverManufacturer: c("121014", "DCM", "Device Observer Manufacturer"),
  deviceObserverModelName: c("121015", "DCM", "Device Observer Model Name"),
  // TID 1002 person observer (the radiologist who signs).
  person: c("121006", "DCM", "Person"),
  personObserverName: c("121008", "DCM", "Person Observer Name"),
  personObserverOrganization: c("121009", "DCM", "Person Observer's Organization Name"),
  comment: c("121106", "DCM", "Comment"),
  procedureReported: c("121058", "DCM", "Procedure reported"),
  /** Generic, in CID 100 (the TID 1500 procedure context group); callers may pass a precise one. */
  imagingProcedure: c("363679005", "SCT", "Imaging procedure"),
  // TID 1501 / 1410 measurement group.
  trackingIdentifier: c("112039", "DCM", "Tracking Identifier"),
  trackingUniqueIdentifier: c("112040", "DCM", "Tracking Unique Identifier"),
  findingSite: c("363698007", "SCT", "Finding Site"),
  kneeJoint: c("49076000", "SCT", "Knee joint"),
  laterality: c("272741003", "SCT", "Laterality"),
  right: c("24028007", "SCT", "Right"),
  left: c("7771000", "SCT", "Left"),
  imageRegion: c("111030", "DCM", "Image Region"),
  sourceOfMeasurement: c("121112", "DCM", "Source of Measurement"),
  probability: c("122157", "DCM", "Probability"),
  noUnits: c("1", "UCUM", "no units"),
  // TID 4019 algorithm identification.
  algorithmFamily: c("111000", "DCM", "Algorithm Family"),
  artificialIntelligence: c("123110", "DCM", "Artificial Intelligence"),
  algorithmName: c("111001", "DCM", "Algorithm Name"),
  algorithmVersion: c("111003", "DCM", "Algorithm Version"),
  algorithmParameters: c("111002", "DCM", "Algorithm Parameters"),
  // Contributing Equipment purpose (CID 7005).
  processingEquipment: c("109102", "DCM", "Processing Equipment"),
  // Private concepts.
  /** Concept name of the grade a probability is for. */
  klGrade: c("KLG", KL, "Kellgren-Lawrence grade"),
  localisationScore: c("KNEESCORE", KL, "Knee localisation score"),
} as const;

/** (KLn, 99KNEEGRADE, "Kellgren-Lawrence grade n (word)") */
export function klGradeCode(grade: number): Code {
  const word = KL_GRADE_WORDS[grade];
  if (word === undefined) throw new RangeError(`Kellgren-Lawrence grade out of range: ${grade}`);
  return c(`KL${grade}`, KL, `Kellgren-Lawrence grade ${grade} (${word})`);
}

const SIDE_WORDS = { R: "Right knee", L: "Left knee", U: "Knee" } as const;

/**
 * The finding of one knee's Measurement Group (TID 1410/1501 "Finding"): the grade of that knee,
 * pre-coordinated with its side and with who graded it — the AI, (AIKLnR, 99KNEEGRADE, "AI
 * result: right knee, Kellgren-Lawrence grade n (word)"), or a radiologist, (KLnR, 99KNEEGRADE,
 * "Right knee, Kellgren-Lawrence grade n (word)"). Viewers that label a measurement with its
 * finding alone (OHIF) thus show grade, side and whose grade it is; the Finding Site, Laterality
 * and Algorithm Identification rows say the same in standard terms. No side letter for a knee of
 * unknown side.
 */
export function kneeFindingCode(
  grade: number,
  laterality: "R" | "L" | "U",
  by: "ai" | "radiologist",
): Code {
  const plain = klGradeCode(grade);
  const side = laterality === "U" ? "" : laterality;
  return by === "ai"
    ? c(
        `AI${plain.value}${side}`,
        KL,
        `AI result: ${SIDE_WORDS[laterality].toLowerCase()}, ${plain.meaning}`,
      )
    : c(`${plain.value}${side}`, KL, `${SIDE_WORDS[laterality]}, ${plain.meaning}`);
}

/**
 * The finding of a knee found but not graded on purpose (`NotGradedKnee.code`, e.g. ARTHROPLASTY):
 * (ARTHROPLASTYR, 99KNEEGRADE, "Right knee, knee arthroplasty — not graded").
 */
export function notGradedFindingCode(code: string, laterality: "R" | "L" | "U"): Code {
  const words =
    code === "ARTHROPLASTY"
      ? "knee arthroplasty — not graded"
      : `not graded (${code.toLowerCase()})`;
  const side = laterality === "U" ? "" : laterality;
  return c(`${code}${side}`, KL, `${SIDE_WORDS[laterality]}, ${words}`);
}

/** The radiologist's finding on a knee that could not be graded (the reason is in the report text). */
export function notGradableFindingCode(laterality: "R" | "L" | "U"): Code {
  const meaning = "not gradable (Kellgren-Lawrence)";
  const side = laterality === "U" ? "" : laterality;
  return c(`NOTGRADABLE${side}`, KL, `${SIDE_WORDS[laterality]}, ${meaning}`);
}

export interface CodingSchemeIdentification {
  designator: string;
  uid?: string;
  registry?: "HL7";
  name: string;
  responsibleOrganization?: string;
  version?: string;
}

/** The schemes declared in (0008,0110); UIDs from PS3.16 section 8. */
export const CODING_SCHEMES: readonly CodingSchemeIdentification[] = [
  {
    designator: "DCM",
    uid: "1.2.840.10008.2.16.4",
    name: "DICOM Controlled Terminology",
    responsibleOrganization: "NEMA (DICOM Standards Committee)",
  },
  {
    designator: "SCT",
    uid: "2.16.840.1.113883.6.96",
    registry: "HL7",
    name: "SNOMED CT",
    responsibleOrganization: "SNOMED International",
  },
  {
    designator: "LN",
    uid: "2.16.840.1.113883.6.1",
    registry: "HL7",
    name: "LOINC",
    responsibleOrganization: "Regenstrief Institute",
  },
  {
    designator: "UCUM",
    uid: "2.16.840.1.113883.6.8",
    registry: "HL7",
    name: "Unified Code for Units of Measure",
    responsibleOrganization: "Regenstrief Institute",
  },
  {
    designator: "UMLS",
    uid: "2.16.840.1.113883.6.86",
    registry: "HL7",
    name: "Unified Medical Language System",
    responsibleOrganization: "US National Library of Medicine",
  },
  {
    designator: "RFC5646",
    uid: "2.16.840.1.113883.6.316",
    registry: "HL7",
    name: "Tags for Identifying Languages (RFC 5646)",
    responsibleOrganization: "IETF",
  },
  {
    designator: KL_CODING_SCHEME.designator,
    name: KL_CODING_SCHEME.name,
    responsibleOrganization: KL_CODING_SCHEME.responsibleOrganization,
    version: KL_CODING_SCHEME.version,
  },
];
