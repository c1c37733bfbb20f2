/**
 * Reads the attributes kneegrade routes and records by, from the start of a Part 10 file,
 * without touching pixel data (dicom-parser stops at (7FE0,0010)).
 */
import dicomParser from "dicom-parser";
import { isDicomUid, NATIVE_TRANSFER_SYNTAXES } from "./uids.ts";

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
  /** (0028,0010) Rows and (0028,0011) Columns, when present. */
  rows?: number;
  columns?: number;
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
    readonly kind: "unparseable" | "missing-attribute" | "invalid-attribute",
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

/** dicom-parser throws `{ exception, dataSet }` objects as well as Errors and strings. */
function parserMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === "object" && error && "exception" in error) {
    return String((error as { exception: unknown }).exception);
  }
  return String(error);
}

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
    const message = parserMessage(error);
    if (!isWholeFile) throw new IncompleteHeaderError(message);
    throw new DicomParseError("unparseable", `unparseable data set: ${message}`);
  }
  return headerOfDataSet(ds, isWholeFile);
}

/**
 * The header of a data set parsed already (by `readRadiographHeader`, or whole by the pixel
 * reader, so that the grading path parses each file once). Same checks, same errors.
 */
export function headerOfDataSet(ds: dicomParser.DataSet, isWholeFile: boolean): RadiographHeader {
  // File Meta Information (group 0002) belongs before the data set only: one inside the data set
  // would override the transfer syntax the association negotiated (dicom-parser merges both).
  const metaLength = ds.elements.x00020000 ? ds.uint32("x00020000") : undefined;
  if (metaLength !== undefined) {
    const metaEnd = ds.elements.x00020000!.dataOffset + 4 + metaLength;
    for (const [tag, el] of Object.entries(ds.elements)) {
      if (tag.startsWith("x0002") && el.dataOffset >= metaEnd) {
        throw new DicomParseError(
          "invalid-attribute",
          `File Meta Information element (${tag.slice(1, 5)},${tag.slice(5)}) inside the data set`,
        );
      }
    }
  }
  const pixelElement = ds.elements[PIXEL_DATA];
  const hasPixelData = pixelElement !== undefined;
  if (!hasPixelData && !isWholeFile) throw new IncompleteHeaderError("no pixel data in prefix");
  const required = (tag: string, name: string) => {
    const v = text(ds, tag);
    if (!v) throw new DicomParseError("missing-attribute", `missing ${name}`);
    return v;
  };
  // UIDs become spool paths, queue keys and query values: only the DICOM UID grammar passes.
  const uid = (tag: string, name: string) => {
    const v = required(tag, name);
    if (!isDicomUid(v)) {
      throw new DicomParseError("invalid-attribute", `${name} is not a valid DICOM UID`);
    }
    return v;
  };
  const optional = Object.fromEntries(OPTIONAL_ATTRIBUTES.map((k) => [k, text(ds, TAGS[k])]));
  const us = (tag: string) => (ds.elements[tag]?.length === 2 ? ds.uint16(tag) : undefined);
  const rows = us("x00280010");
  const columns = us("x00280011");
  return {
    sopClassUid: uid(TAGS.sopClassUid, "SOPClassUID (0008,0016)"),
    sopInstanceUid: uid(TAGS.sopInstanceUid, "SOPInstanceUID (0008,0018)"),
    studyInstanceUid: uid(TAGS.studyInstanceUid, "StudyInstanceUID (0020,000D)"),
    seriesInstanceUid: uid(TAGS.seriesInstanceUid, "SeriesInstanceUID (0020,000E)"),
    transferSyntaxUid: uid("x00020010", "TransferSyntaxUID (0002,0010)"),
    ...optional,
    ...(rows !== undefined ? { rows } : {}),
    ...(columns !== undefined ? { columns } : {}),
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
  // The delimiter must lie after the start of the pixel data (data set trailing padding may
  // follow it): one found earlier in the tail — a small file's header, a closed sequence before
  // the pixel data — does not terminate the pixel data.
  const t = Buffer.from(tail);
  const at = t.lastIndexOf(SEQUENCE_DELIMITER);
  return at >= 0 && sizeBytes - t.length + at >= pixels.offset
    ? undefined
    : "encapsulated pixel data not terminated (truncated)";
}

/**
 * Whether the Pixel Data's encoding agrees with the transfer syntax it arrived under (PS3.5 A.4):
 * native syntaxes carry it with a defined length, all others encapsulated (undefined length).
 * A mismatch cannot be decoded as announced, so it is refused instead of stored.
 */
export function pixelEncodingProblem(header: RadiographHeader): string | undefined {
  const pixels = header.pixelData;
  if (!pixels) return undefined;
  const native = NATIVE_TRANSFER_SYNTAXES.includes(header.transferSyntaxUid);
  const encapsulated = pixels.length === undefined;
  if (native && encapsulated) {
    return `encapsulated (compressed) pixel data under the native transfer syntax ${header.transferSyntaxUid}`;
  }
  if (!native && !encapsulated) {
    return `native pixel data under the compressed transfer syntax ${header.transferSyntaxUid}`;
  }
  return undefined;
}

/** Whether Rows/Columns are present and within `maxDimension` (a bound on memory per image). */
export function dimensionProblem(
  header: RadiographHeader,
  maxDimension: number,
): string | undefined {
  if (!header.hasPixelData) return undefined;
  const { rows, columns } = header;
  if (!rows || !columns) return "Rows (0028,0010) or Columns (0028,0011) missing or zero";
  if (rows > maxDimension || columns > maxDimension) {
    return `image ${columns}x${rows} exceeds the ${maxDimension} pixel limit (MAX_IMAGE_DIMENSION)`;
  }
  return undefined;
}

/** Value representations of PS3.5 6.2 (explicit VR data sets may use only these). */
const VALID_VRS = new Set(
  "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split(
    " ",
  ),
);

/**
 * Whether the whole Part 10 file parses as a DICOM data set from start to end: every element,
 * sequence and item closed, no value running past the end, only standard VRs. An object that
 * passes the header checks but not this one could not be read later (by us, by DCMTK, by a
 * PACS), so it is refused instead of acknowledged.
 */
export function structureProblem(file: Uint8Array): string | undefined {
  let ds: dicomParser.DataSet;
  try {
    ds = dicomParser.parseDicom(file);
  } catch (error) {
    const message = parserMessage(error);
    return `data set does not parse to its end: ${message}`;
  }
  // dicom-parser reads an unterminated sequence or pixel data to the end of the file, with a
  // warning: DCMTK (and a PACS) would not read such a file.
  const warnings = (ds as unknown as { warnings?: string[] }).warnings ?? [];
  if (warnings.length > 0) return `data set is not well formed: ${warnings[0]}`;
  const walk = (set: dicomParser.DataSet): string | undefined => {
    for (const [tag, el] of Object.entries(set.elements)) {
      // Item and delimitation tags (FFFE,xxxx) carry no VR.
      if (el.vr !== undefined && !tag.startsWith("xfffe") && !VALID_VRS.has(el.vr)) {
        return `element ${tag} has unknown VR "${el.vr}"`;
      }
      if (el.dataOffset + el.length > file.length) return `element ${tag} runs past the end`;
      if (tag === PIXEL_DATA && el.vr === "SQ") return "Pixel Data encoded as a sequence";
      for (const item of el.items ?? []) {
        if (item.dataSet) {
          const p = walk(item.dataSet);
          if (p) return p;
        }
      }
    }
    return undefined;
  };
  return walk(ds);
}
