/**
 * Reads the attributes kneegrade routes and records by, from the start of a Part 10 file,
 * without touching pixel data (dicom-parser stops at (7FE0,0010)).
 */
import { inflateRawSync } from "node:zlib";
import dicomParser from "dicom-parser";
import { textDecoder } from "./charset.ts";
import { dataSetStartProblem, unreadableReason } from "./diagnose.ts";
import { clampAttribute, type HeaderKeyword, type LimitNote } from "./limits.ts";
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
  /**
   * Patient identity and study date as received (names decoded in the Specific Character Set):
   * patient data, never logged. Not yet held to their VR limits: see {@link clampHeader}.
   */
  patientName?: string;
  patientId?: string;
  studyDate?: string;
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

/** "x0002ffff" as "(0002,FFFF)". */
function tagName(tag: string): string {
  return `(${tag.slice(1, 5)},${tag.slice(5)})`.toUpperCase();
}

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

/** Patient identity: PN and LO may hold characters beyond ASCII, decoded in the data set's charset. */
const IDENTITY = {
  patientName: "x00100010",
  patientId: "x00100020",
  studyDate: "x00080020",
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
    ds = dicomParser.parseDicom(bytes, { untilTag: PIXEL_DATA, inflater });
  } catch (error) {
    const message = parserMessage(error);
    if (!isWholeFile) throw new IncompleteHeaderError(message);
    // The parser's words name neither the element nor the cause: say what a sender can fix.
    const reason = unreadableReason(bytes) ?? `unparseable data set: ${message}`;
    throw new DicomParseError("unparseable", reason);
  }
  return headerOfDataSet(ds, isWholeFile);
}

/** Same bound as the pixel reader's on an inflated Deflated data set (a deflate bomb guard). */
const MAX_INFLATED_BYTES = 2 ** 30;

/**
 * Inflates a Deflated data set the way the pixel reader does, so that both read such a file
 * alike: dicom-parser's own path calls Buffer#copy, which a Uint8Array lacks ("i.copy is not a
 * function"). On a prefix of the file it throws, and the caller reads the whole file. (The
 * listener negotiates no Deflated syntax: this serves `kneegrade grade` and the worker.)
 */
function inflater(bytes: Uint8Array, position: number): Uint8Array {
  const inflated = inflateRawSync(bytes.subarray(position), {
    maxOutputLength: MAX_INFLATED_BYTES,
  });
  const full = new Uint8Array(position + inflated.length);
  full.set(bytes.subarray(0, position), 0);
  full.set(inflated, position);
  return full;
}

/**
 * The header of a data set parsed already (by `readRadiographHeader`, or whole by the pixel
 * reader, so that the grading path parses each file once). Same checks, same errors.
 */
export function headerOfDataSet(ds: dicomParser.DataSet, isWholeFile: boolean): RadiographHeader {
  const start = dataSetStartProblem(ds.byteArray);
  if (start) throw new DicomParseError("unparseable", start);
  // File Meta Information (group 0002) belongs before the data set only: one inside the data set
  // would override the transfer syntax the association negotiated (dicom-parser merges both).
  // An element is inside the data set when its value ends past the group's end: the group's last
  // element may be empty (DCMTK and GDCM write an empty (0002,0016) or (0002,0013)), and its
  // value then starts exactly where the group ends; any element after the group has a header of
  // at least 8 bytes first, so even an empty one ends beyond it.
  const metaLength = ds.elements.x00020000 ? ds.uint32("x00020000") : undefined;
  if (metaLength !== undefined) {
    const metaEnd = ds.elements.x00020000!.dataOffset + 4 + metaLength;
    for (const [tag, el] of Object.entries(ds.elements)) {
      if (tag.startsWith("x0002") && el.dataOffset + el.length > metaEnd) {
        throw new DicomParseError(
          "invalid-attribute",
          `File Meta Information element ${tagName(tag)} inside the data set`,
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
  // Text is decoded in the data set's character set (dicom-parser's `string` reads Latin-1): an
  // accession number or description in UTF-8 is stored, routed and shown as sent.
  const decode = textDecoder(ds.string("x00080005"));
  const decoded = (tag: string) => {
    const el = ds.elements[tag];
    if (!el || el.length === 0 || el.dataOffset + el.length > ds.byteArray.length) return undefined;
    const value = decode(ds.byteArray.subarray(el.dataOffset, el.dataOffset + el.length))
      .replace(/[\0 ]+$/, "")
      .replace(/^ +/, "");
    return value === "" ? undefined : value;
  };
  const optional = Object.fromEntries(OPTIONAL_ATTRIBUTES.map((k) => [k, decoded(TAGS[k])]));
  const identity = Object.fromEntries(
    Object.entries(IDENTITY).map(([k, tag]) => [k, decoded(tag)]),
  );
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
    ...identity,
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

/** The header's text attributes kneegrade stores, by the keyword their VR limits are kept under. */
const STORED: Partial<Record<keyof RadiographHeader, HeaderKeyword>> = {
  modality: "Modality",
  bodyPartExamined: "BodyPartExamined",
  studyDescription: "StudyDescription",
  seriesDescription: "SeriesDescription",
  protocolName: "ProtocolName",
  requestedProcedureDescription: "RequestedProcedureDescription",
  viewPosition: "ViewPosition",
  imageLaterality: "ImageLaterality",
  laterality: "Laterality",
  patientOrientation: "PatientOrientation",
  accessionNumber: "AccessionNumber",
  patientName: "PatientName",
  patientId: "PatientID",
  studyDate: "StudyDate",
};

/**
 * The header as kneegrade stores it: every text attribute within its VR's limits (truncated, or a
 * malformed date dropped; see limits.ts), and a note for each one that had to change. Routing
 * keeps to the header as received (a rule may look past the 64th character); the spool keeps the
 * file as received.
 */
export function clampHeader(header: RadiographHeader): {
  header: RadiographHeader;
  notes: LimitNote[];
} {
  const clamped: Record<string, unknown> = { ...header };
  const notes: LimitNote[] = [];
  for (const [field, keyword] of Object.entries(STORED) as [string, HeaderKeyword][]) {
    const value = clamped[field];
    if (typeof value !== "string") continue;
    const { value: within, note } = clampAttribute(keyword, value);
    if (!note) continue;
    notes.push(note);
    if (within === undefined) delete clamped[field];
    else clamped[field] = within;
  }
  return { header: clamped as unknown as RadiographHeader, notes };
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
    return unreadableReason(file) ?? `data set does not parse to its end: ${parserMessage(error)}`;
  }
  // dicom-parser reads an unterminated sequence or pixel data to the end of the file, with a
  // warning: DCMTK (and a PACS) would not read such a file.
  const warnings = (ds as unknown as { warnings?: string[] }).warnings ?? [];
  if (warnings.length > 0) {
    return unreadableReason(file) ?? `data set is not well formed: ${warnings[0]}`;
  }
  const bytes = ds.byteArray;
  // Zero bytes after the last element (media padded to a block, by senders that write no Data
  // Set Trailing Padding) read as empty (0000,0000) elements, by DCMTK too, and carry nothing:
  // tolerated at the top level when nothing but zeros follows the last real element.
  const lastEnd = Math.max(
    ...Object.entries(ds.elements)
      .filter(([tag]) => tag !== "x00000000")
      .map(([, el]) => el.dataOffset + el.length),
  );
  const zeroPadded = lastEnd < bytes.length && bytes.subarray(lastEnd).every((b) => b === 0);
  const walk = (set: dicomParser.DataSet): string | undefined => {
    for (const [tag, el] of Object.entries(set.elements)) {
      const name = `element ${tagName(tag)}`;
      // (Zeros inside the data set are not padding: they stand where an element should be.)
      if (set === ds && tag === "x00000000" && zeroPadded && el.dataOffset - 8 >= lastEnd) continue;
      // Item and delimitation tags (FFFE,xxxx) carry no VR.
      if (el.vr !== undefined && !tag.startsWith("xfffe") && !VALID_VRS.has(el.vr)) {
        return `${name} has unknown VR ${JSON.stringify(el.vr)}`;
      }
      if (el.dataOffset + el.length > bytes.length) return `${name} runs past the end of the file`;
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
