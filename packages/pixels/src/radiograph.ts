/**
 * readRadiograph: a DICOM Part 10 projection radiograph (bytes) -> frame 0 as stored values,
 * modality values and display-ready grey. dicom-parser reads the data set (all four native
 * syntaxes; Deflated through node:zlib), CharLS and dcmjs-codecs decode compressed frames
 * (codecs.ts), and the LUT pipeline (lut.ts) is ours.
 */
import { inflateRawSync } from "node:zlib";
import {
  headerOfDataSet,
  type RadiographHeader,
  readRadiographHeader,
  sopClassName,
  unreadableReason,
} from "@kneegrade/dicom";
import dicomParser from "dicom-parser";
import { decodeFrame } from "./codecs.ts";
import { PixelDataError } from "./errors.ts";
import { encapsulatedFrame0, nativeStored, type PixelModule, storedRange } from "./frame.ts";
import {
  autoWindow,
  type LookupTable,
  type ModalityTransform,
  render,
  type StoredArray,
  type VoiFunction,
  type VoiTransform,
  validWindow,
} from "./lut.ts";
import { readSpacing, type Spacing } from "./spacing.ts";
import { describeTransferSyntax, transferSyntaxInfo } from "./syntaxes.ts";

export interface Radiograph {
  /** Columns. */
  width: number;
  /** Rows. */
  height: number;
  /**
   * Stored values of frame 0 after decoding (one sample per pixel). A compressed frame's are
   * widened from the decoder's 8 or 16 bits on first read (grading reads only `display`).
   */
  readonly stored: Int32Array;
  /**
   * Modality values: stored * RescaleSlope + RescaleIntercept (or the Modality LUT Sequence);
   * computed from `stored` on first read.
   */
  readonly values: Float32Array;
  /** Display grey after the VOI transform and MONOCHROME1 inversion: 0 = black, 255 = white. */
  display: Uint8Array;
  photometric: "MONOCHROME1" | "MONOCHROME2";
  bitsStored: number;
  bitsAllocated: number;
  pixelRepresentation: 0 | 1;
  transferSyntaxUid: string;
  /**
   * How the VOI was chosen: "window" (first WindowCenter/Width, honouring VOILUTFunction
   * LINEAR/LINEAR_EXACT/SIGMOID), "voi-lut" (VOI LUT Sequence), or "auto" (robust percentiles
   * 0.5 %/99.5 % of the values when the header has neither). `function` is the VOI LUT Function
   * applied ("auto" maps [center - width/2, center + width/2] = [p0.5, p99.5] linearly onto
   * black..white, i.e. LINEAR_EXACT; width is 0 for a uniform image, shown mid-grey).
   */
  voi: {
    kind: "window" | "voi-lut" | "auto";
    center?: number;
    width?: number;
    function?: VoiFunction;
  };
  /** mm per pixel between row centres / column centres, and which attribute it came from. */
  spacing: Spacing | null;
  /** How stored values became modality values. */
  modality: { kind: "rescale"; slope: number; intercept: number } | { kind: "lut" };
  /** Number of Frames (0028,0008), 1 when absent; only frame 0 is decoded. */
  numberOfFrames: number;
  /** Whether the transfer syntax is lossy (the pixels are not the original ones). */
  lossyTransferSyntax: boolean;
}

export interface ReadOptions {
  /** Largest Rows x Columns accepted (default 2^26, e.g. 8192 x 8192). */
  maxPixels?: number;
}

const DEFAULT_MAX_PIXELS = 2 ** 26;
/** Limit on the inflated size of a Deflated data set (a guard against deflate bombs). */
const MAX_INFLATED_BYTES = 2 ** 30;

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === "object" && error !== null && "exception" in error) {
    return messageOf((error as { exception: unknown }).exception);
  }
  return String(error);
}

function inflater(bytes: Uint8Array, position: number): Uint8Array {
  let inflated: Buffer;
  try {
    inflated = inflateRawSync(bytes.subarray(position), { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (error) {
    throw new PixelDataError(
      "CORRUPT_PIXEL_DATA",
      `the Deflated data set could not be inflated: ${messageOf(error)}`,
      { cause: error },
    );
  }
  const full = new Uint8Array(position + inflated.length);
  full.set(bytes.subarray(0, position), 0);
  full.set(inflated, position);
  return full;
}

function transferSyntaxOf(part10: Uint8Array): string {
  let meta: dicomParser.DataSet;
  try {
    meta = dicomParser.readPart10Header(part10);
  } catch (error) {
    throw new PixelDataError(
      "CORRUPT_PIXEL_DATA",
      `not a readable DICOM Part 10 file (${part10.byteLength} bytes): ${messageOf(error)}`,
      { cause: error },
    );
  }
  const uid = meta.string("x00020010")?.replace(/\0/g, "").trim();
  if (!uid) {
    throw new PixelDataError(
      "CORRUPT_PIXEL_DATA",
      "not a readable DICOM Part 10 file: the File Meta Information has no Transfer Syntax UID (0002,0010)",
    );
  }
  return uid;
}

/** Parses the data set; a file cut short inside Pixel Data is reported as such. */
function parse(part10: Uint8Array, syntaxName: string): dicomParser.DataSet {
  try {
    return dicomParser.parseDicom(part10, { inflater });
  } catch (error) {
    if (error instanceof PixelDataError) throw error;
    const partial = (error as { dataSet?: dicomParser.DataSet } | null)?.dataSet;
    const pixel = partial?.elements.x7fe00010;
    // What stops a reader, walked element by element as DCMTK reads (dicom-parser's own message
    // names its internals, not the file): stray bytes after Pixel Data are not a truncation.
    const reason = unreadableReason(part10);
    if (partial && pixel && (reason === undefined || reason.includes("(7FE0,0010)"))) {
      const declared = pixel.hadUndefinedLength ? "" : ` declares ${pixel.length} bytes but`;
      throw new PixelDataError(
        "CORRUPT_PIXEL_DATA",
        `Pixel Data (7FE0,0010) is truncated: it${declared} the file ends ` +
          `${partial.byteArray.length - pixel.dataOffset} bytes after its start (${syntaxName})`,
        { cause: error },
      );
    }
    throw new PixelDataError(
      "CORRUPT_PIXEL_DATA",
      `the data set could not be parsed (${syntaxName}): ${reason ?? messageOf(error)}`,
      { cause: error },
    );
  }
}

function unsupported(message: string): PixelDataError {
  return new PixelDataError("UNSUPPORTED_IMAGE", message);
}

function readPixelModule(ds: dicomParser.DataSet): {
  module: PixelModule;
  photometric: "MONOCHROME1" | "MONOCHROME2";
} {
  const samples = ds.uint16("x00280002") ?? 1;
  const photometric = ds.string("x00280004")?.trim().toUpperCase();
  if (samples !== 1 || (photometric !== "MONOCHROME1" && photometric !== "MONOCHROME2")) {
    throw unsupported(
      `only grey images are supported (Samples per Pixel 1, MONOCHROME1/2); this one has ` +
        `Samples per Pixel ${samples} and Photometric Interpretation ${photometric ?? "(absent)"}`,
    );
  }
  const rows = ds.uint16("x00280010") ?? 0;
  const columns = ds.uint16("x00280011") ?? 0;
  if (rows === 0 || columns === 0) {
    throw unsupported(`Rows (${rows}) and Columns (${columns}) must both be present and non-zero`);
  }
  const bitsAllocated = ds.uint16("x00280100") ?? 0;
  const bitsStored = ds.uint16("x00280101") ?? bitsAllocated;
  const highBit = ds.uint16("x00280102") ?? bitsStored - 1;
  const pr = ds.uint16("x00280103") ?? 0;
  if (![8, 16, 32].includes(bitsAllocated)) {
    throw unsupported(`Bits Allocated ${bitsAllocated} is not supported (8, 16 or 32)`);
  }
  if (bitsStored < 1 || bitsStored > bitsAllocated) {
    throw unsupported(`Bits Stored ${bitsStored} does not fit Bits Allocated ${bitsAllocated}`);
  }
  if (pr !== 0 && pr !== 1) throw unsupported(`Pixel Representation ${pr} is neither 0 nor 1`);
  if (pr === 0 && bitsStored === 32) {
    throw unsupported("unsigned 32-bit stored values do not fit the stored Int32Array");
  }
  return {
    module: { rows, columns, bitsAllocated, bitsStored, highBit, pixelRepresentation: pr },
    photometric,
  };
}

/** A LUT Descriptor (0028,3002) + LUT Data (0028,3006) pair from a Modality or VOI LUT item. */
function readLut(item: dicomParser.DataSet, signedInput: boolean): LookupTable | undefined {
  const descriptor = item.elements.x00283002;
  const data = item.elements.x00283006;
  if (!descriptor || !data || descriptor.length < 6) return undefined;
  const entries = item.uint16("x00283002", 0) || 65536;
  const firstRaw = item.uint16("x00283002", 1) ?? 0;
  const bits = item.uint16("x00283002", 2) ?? 16;
  const signedFirst = signedInput || descriptor.vr === "SS";
  const firstMapped = signedFirst && firstRaw >= 32768 ? firstRaw - 65536 : firstRaw;
  const lut = new Uint16Array(entries);
  if (bits <= 8 && data.length >= entries && data.length < 2 * entries) {
    // 8-bit entries packed two per 16-bit word ("8 bits allocated").
    for (let i = 0; i < entries; i++) {
      const word = item.uint16("x00283006", i >> 1) ?? 0;
      lut[i] = i & 1 ? word >> 8 : word & 0xff;
    }
  } else if (data.length >= 2 * entries) {
    for (let i = 0; i < entries; i++) lut[i] = item.uint16("x00283006", i) ?? 0;
  } else {
    return undefined;
  }
  return { firstMapped, bits: bits >= 1 && bits <= 16 ? bits : 16, data: lut };
}

function firstItem(ds: dicomParser.DataSet, tag: string): dicomParser.DataSet | undefined {
  return ds.elements[tag]?.items?.[0]?.dataSet;
}

function readModality(ds: dicomParser.DataSet, m: PixelModule): ModalityTransform {
  const item = firstItem(ds, "x00283000");
  const lut = item && readLut(item, m.pixelRepresentation === 1);
  if (lut) return { kind: "lut", lut };
  const slope = ds.floatString("x00281053");
  const intercept = ds.floatString("x00281052");
  return {
    kind: "rescale",
    slope: slope !== undefined && Number.isFinite(slope) && slope !== 0 ? slope : 1,
    intercept: intercept !== undefined && Number.isFinite(intercept) ? intercept : 0,
  };
}

const VOI_FUNCTIONS: readonly VoiFunction[] = ["LINEAR", "LINEAR_EXACT", "SIGMOID"];

/** Window first, then the VOI LUT Sequence, then the automatic window. */
function voiChooser(
  ds: dicomParser.DataSet,
  modalityMin: number,
): (histogram: () => { value: number; count: number }[]) => VoiTransform {
  return (histogram) => {
    const named = ds.string("x00281056")?.trim().toUpperCase() as VoiFunction | undefined;
    const fn: VoiFunction = named && VOI_FUNCTIONS.includes(named) ? named : "LINEAR";
    const center = ds.floatString("x00281050", 0);
    const width = ds.floatString("x00281051", 0);
    if (center !== undefined && width !== undefined && validWindow(center, width, fn)) {
      return { kind: "window", center, width, fn };
    }
    const item = firstItem(ds, "x00283010");
    const lut = item && readLut(item, modalityMin < 0);
    if (lut) return { kind: "voi-lut", lut };
    return { kind: "auto", ...autoWindow(histogram()) };
  };
}

function endsWithEndMarker(bytes: Uint8Array): boolean {
  for (let i = bytes.length - 2; i >= Math.max(0, bytes.length - 8); i--) {
    if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return true;
  }
  return false;
}

async function storedValues(
  part10: Uint8Array,
  ds: dicomParser.DataSet,
  uid: string,
  m: PixelModule,
  photometric: string,
  numberOfFrames: number,
): Promise<StoredArray> {
  const info = transferSyntaxInfo(uid)!;
  const el = ds.elements.x7fe00010;
  if (!el || (el.length === 0 && !el.fragments?.length)) {
    throw new PixelDataError(
      "NO_PIXEL_DATA",
      `the data set has no Pixel Data (7FE0,0010) (${describeTransferSyntax(uid)})`,
    );
  }
  const encoding = info.encoding;
  if (encoding.kind === "native") {
    if (el.encapsulatedPixelData) {
      throw new PixelDataError(
        "CORRUPT_PIXEL_DATA",
        `Pixel Data is encapsulated but the transfer syntax is ${describeTransferSyntax(uid)}`,
      );
    }
    const frameBytes = (m.rows * m.columns * m.bitsAllocated) / 8;
    const available = Math.min(el.length, ds.byteArray.length - el.dataOffset);
    if (available < frameBytes) {
      throw new PixelDataError(
        "CORRUPT_PIXEL_DATA",
        `Pixel Data holds ${available} bytes but frame 0 of ${m.columns}x${m.rows} at ` +
          `${m.bitsAllocated} bits allocated needs ${frameBytes} (${describeTransferSyntax(uid)})`,
      );
    }
    const bytes = ds.byteArray.subarray(el.dataOffset, el.dataOffset + frameBytes);
    return nativeStored(bytes, m, encoding.littleEndian, el.vr);
  }
  if (!el.encapsulatedPixelData) {
    throw new PixelDataError(
      "CORRUPT_PIXEL_DATA",
      `Pixel Data is not encapsulated although the transfer syntax is ${describeTransferSyntax(uid)}`,
    );
  }
  if (m.bitsAllocated > 16) {
    throw unsupported(
      `Bits Allocated ${m.bitsAllocated} is not supported with ${describeTransferSyntax(uid)}`,
    );
  }
  let encoded = encapsulatedFrame0(ds, el, numberOfFrames, encoding.codec);
  // libjpeg fills a truncated stream with grey and only warns; a JPEG, JPEG-LS or JPEG 2000
  // codestream must end with EOI/EOC (FF D9), give or take a padding byte.
  if (encoding.codec !== "rle" && !endsWithEndMarker(encoded)) {
    throw new PixelDataError(
      "CORRUPT_PIXEL_DATA",
      `frame 0 (${encoded.length} bytes) does not end with an end-of-image marker (FF D9): ` +
        `the codestream is truncated (${describeTransferSyntax(uid)})`,
    );
  }
  // Never hand the caller's buffer to the worker (it is transferred, i.e. detached). Copy with
  // Uint8Array's own constructor: Buffer#slice would return a view, not a copy.
  if (encoded.buffer === ds.byteArray.buffer || encoded.buffer === part10.buffer) {
    encoded = new Uint8Array(encoded);
  }
  return decodeFrame({
    codec: encoding.codec,
    encoded,
    width: m.columns,
    height: m.rows,
    bitsAllocated: m.bitsAllocated,
    bitsStored: m.bitsStored,
    pixelRepresentation: m.pixelRepresentation,
    photometric,
    lossy: encoding.lossy,
  });
}

/** The whole data set, parsed once, with its transfer syntax (throws PixelDataError). */
function parseWhole(part10: Uint8Array) {
  const transferSyntaxUid = transferSyntaxOf(part10);
  const info = transferSyntaxInfo(transferSyntaxUid);
  if (!info) {
    throw new PixelDataError(
      "UNSUPPORTED_TRANSFER_SYNTAX",
      `transfer syntax ${describeTransferSyntax(transferSyntaxUid)} is not supported`,
    );
  }
  const ds = parse(part10, describeTransferSyntax(transferSyntaxUid));
  return { ds, transferSyntaxUid, info };
}

/** Decodes frame 0 of a grey projection radiograph and renders it for display. */
export async function readRadiograph(
  part10: Uint8Array,
  options: ReadOptions = {},
): Promise<Radiograph> {
  return fromDataSet(part10, parseWhole(part10), options);
}

/**
 * A radiograph file read for grading: its header (@kneegrade/dicom) and its pixels from one parse
 * of the data set. Errors as the two readers give them, in the same order: a file whose header
 * cannot be read throws the header's DicomParseError, one whose pixel data cannot be read the
 * PixelDataError (only then is the file parsed a second time, to tell the two apart).
 */
export async function readRadiographFile(
  part10: Uint8Array,
  options: ReadOptions = {},
): Promise<{ header: RadiographHeader; radiograph: Radiograph }> {
  let parsed: ReturnType<typeof parseWhole>;
  try {
    parsed = parseWhole(part10);
  } catch (error) {
    readRadiographHeader(part10, true); // a header problem is reported as such
    throw error;
  }
  const header = headerOfDataSet(parsed.ds, true);
  return { header, radiograph: await fromDataSet(part10, parsed, options) };
}

async function fromDataSet(
  part10: Uint8Array,
  { ds, transferSyntaxUid, info }: ReturnType<typeof parseWhole>,
  options: ReadOptions,
): Promise<Radiograph> {
  // A report, plan, waveform or document has no pixels at all: say what it is, not what it lacks.
  if (!ds.elements.x7fe00010 && !ds.elements.x7fe00008 && !ds.elements.x7fe00009) {
    const sopClass = sopClassName(ds.string("x00080016")?.replace(/\0/g, "").trim());
    throw new PixelDataError(
      "NO_PIXEL_DATA",
      /Image/.test(sopClass)
        ? `the data set has no Pixel Data (7FE0,0010) (${sopClass})`
        : `not an image: ${sopClass}`,
    );
  }
  const { module: m, photometric } = readPixelModule(ds);
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (m.rows * m.columns > maxPixels) {
    throw unsupported(`${m.columns}x${m.rows} exceeds the limit of ${maxPixels} pixels`);
  }
  const numberOfFrames = Math.max(1, ds.intString("x00280008") ?? 1);
  const samples = await storedValues(part10, ds, transferSyntaxUid, m, photometric, numberOfFrames);
  const modality = readModality(ds, m);
  const range = storedRange(m);
  const modalityMin =
    modality.kind === "rescale"
      ? Math.min(
          range.min * modality.slope + modality.intercept,
          range.max * modality.slope + modality.intercept,
        )
      : 0;
  const frame = render(
    samples,
    range,
    modality,
    voiChooser(ds, modalityMin),
    photometric === "MONOCHROME1",
  );
  const { display, voi } = frame;
  let stored = samples instanceof Int32Array ? samples : undefined;
  return {
    width: m.columns,
    height: m.rows,
    get stored() {
      stored ??= new Int32Array(samples); // one native widening copy
      return stored;
    },
    get values() {
      return frame.values;
    },
    display,
    photometric,
    bitsStored: m.bitsStored,
    bitsAllocated: m.bitsAllocated,
    pixelRepresentation: m.pixelRepresentation,
    transferSyntaxUid,
    voi:
      voi.kind === "window"
        ? { kind: "window", center: voi.center, width: voi.width, function: voi.fn }
        : voi.kind === "auto"
          ? {
              kind: "auto",
              center: (voi.lo + voi.hi) / 2,
              width: voi.hi - voi.lo,
              function: "LINEAR_EXACT",
            }
          : { kind: "voi-lut" },
    spacing: readSpacing(ds),
    modality:
      modality.kind === "rescale"
        ? { kind: "rescale", slope: modality.slope, intercept: modality.intercept }
        : { kind: "lut" },
    numberOfFrames,
    lossyTransferSyntax: info.encoding.kind === "encapsulated" && info.encoding.lossy,
  };
}
