/**
 * Reads the attributes kneegrade routes and records by, from the start of a Part 10 file,
 * without touching pixel data (dicom-parser stops at (7FE0,0010)).
 */
import dicomParser from "dicom-parser";

export interface RadiographHeader {
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  transferSyntaxUid: string;
  modality?: string;
  bodyPartExamined?: string;
  studyDescription?: string;
  seriesDescription?: string;
  protocolName?: string;
  requestedProcedureDescription?: string;
  viewPosition?: string;
  imageLaterality?: string;
  laterality?: string;
  /** (0020,0020) as written, e.g. "L\\F": the patient directions of the rows and columns. */
  patientOrientation?: string;
  accessionNumber?: string;
  hasPixelData: boolean;
  /** Where Pixel Data's value starts in the file, and its length (undefined: encapsulated). */
  pixelData?: { offset: number; length?: number };
}

/**
 * The data set is not usable: `unparseable` (answered with "cannot understand") or missing an
 * attribute its SOP class requires (answered with "data set does not match SOP class").
 */
export class DicomParseError extends Error {
  override name = "DicomParseError";
  constructor(
    readonly kind: "unparseable" | "missing-attribute",
    message: string,
  ) {
    super(message);
  }
}

/** The head ended before the pixel data tag: read more of the file and try again. */
export class IncompleteHeaderError extends Error {
  override name = "IncompleteHeaderError";
}

const PIXEL_DATA = "x7fe00010";

/** The attributes knee routing rules may test (docs/ROUTING.md). */
export const ROUTABLE_ATTRIBUTES = [
  "bodyPartExamined",
  "studyDescription",
  "seriesDescription",
  "protocolName",
  "requestedProcedureDescription",
  "viewPosition",
] as const;

const OPTIONAL_ATTRIBUTES = [
  ...ROUTABLE_ATTRIBUTES,
  "modality",
  "imageLaterality",
  "laterality",
  "patientOrientation",
  "accessionNumber",
] as const;

const TAGS = {
  sopClassUid: "x00080016",
  sopInstanceUid: "x00080018",
  studyInstanceUid: "x0020000d",
  seriesInstanceUid: "x0020000e",
  modality: "x00080060",
  bodyPartExamined: "x00180015",
  studyDescription: "x00081030",
  seriesDescription: "x0008103e",
  protocolName: "x00181030",
  requestedProcedureDescription: "x00321060",
  viewPosition: "x00185101",
  imageLaterality: "x00200062",
  laterality: "x00200060",
  patientOrientation: "x00200020",
  accessionNumber: "x00080050",
} as const;

function text(ds: dicomParser.DataSet, tag: string): string | undefined {
  const value = ds.string(tag);
  if (value === undefined) return undefined;
  const trimmed = value.replace(/\0/g, "").trim();
  return trimmed === "" ? undefined : trimmed;
}

/**
 * Parses the header of a Part 10 file held in `bytes` (the whole file, or its first bytes).
 * Throws IncompleteHeaderError when `bytes` is only a prefix that ends inside the header.
 */
export function readRadiographHeader(bytes: Uint8Array, isWholeFile: boolean): RadiographHeader {
  let ds: dicomParser.DataSet;
  try {
    ds = dicomParser.parseDicom(bytes, { untilTag: PIXEL_DATA });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (!isWholeFile) throw new IncompleteHeaderError(message);
    throw new DicomParseError("unparseable", `unparseable data set: ${message}`);
  }
  const pixelElement = ds.elements[PIXEL_DATA];
  const hasPixelData = pixelElement !== undefined;
  if (!hasPixelData && !isWholeFile) throw new IncompleteHeaderError("no pixel data in prefix");
  const required = (tag: string, name: string) => {
    const v = text(ds, tag);
    if (!v) throw new DicomParseError("missing-attribute", `missing ${name}`);
    return v;
  };
  const optional = Object.fromEntries(OPTIONAL_ATTRIBUTES.map((k) => [k, text(ds, TAGS[k])]));
  return {
    sopClassUid: required(TAGS.sopClassUid, "SOPClassUID (0008,0016)"),
    sopInstanceUid: required(TAGS.sopInstanceUid, "SOPInstanceUID (0008,0018)"),
    studyInstanceUid: required(TAGS.studyInstanceUid, "StudyInstanceUID (0020,000D)"),
    seriesInstanceUid: required(TAGS.seriesInstanceUid, "SeriesInstanceUID (0020,000E)"),
    transferSyntaxUid: required("x00020010", "TransferSyntaxUID (0002,0010)"),
    ...optional,
    hasPixelData,
    ...(pixelElement
      ? {
          pixelData: {
            offset: pixelElement.dataOffset,
            length: pixelElement.hadUndefinedLength ? undefined : pixelElement.length,
          },
        }
      : {}),
  };
}

/** Sequence Delimitation Item (FFFE,E0DD) with length 0, as it ends encapsulated pixel data. */
const SEQUENCE_DELIMITER = Buffer.from("feffdde000000000", "hex");

/**
 * Whether the pixel data the header announces is all there: a truncated object is refused rather
 * than graded. `tail` is the end of the file (at least its last few hundred bytes).
 */
export function pixelDataProblem(
  header: RadiographHeader,
  sizeBytes: number,
  tail: Uint8Array,
): string | undefined {
  const pixels = header.pixelData;
  if (!pixels) return undefined;
  if (pixels.length !== undefined) {
    const end = pixels.offset + pixels.length;
    return end > sizeBytes ? `pixel data truncated: ${sizeBytes} of ${end} bytes` : undefined;
  }
  return Buffer.from(tail).includes(SEQUENCE_DELIMITER)
    ? undefined
    : "encapsulated pixel data not terminated (truncated)";
}
