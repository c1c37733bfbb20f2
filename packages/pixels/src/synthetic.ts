/**
 * A small DICOM Part 10 writer for tests: builds exactly the data set a test describes (explicit
 * or implicit VR little endian, explicit VR big endian, or deflated), including the attributes
 * dcmjs 0.51 cannot write (LUT Descriptor "US or SS", LUT Data "US or OW": "Invalid vr type xs").
 * Sequences and items have defined lengths; Pixel Data is native (not encapsulated).
 */
import { deflateRawSync } from "node:zlib";

export type Vr =
  | "CS"
  | "DS"
  | "IS"
  | "LO"
  | "SH"
  | "UI"
  | "PN"
  | "DA"
  | "TM"
  | "AE"
  | "LT"
  | "US"
  | "SS"
  | "UL"
  | "FL"
  | "FD"
  | "OB"
  | "OW"
  | "SQ";

export interface DataElement {
  /** (gggg,eeee) as 0xggggeeee. */
  tag: number;
  vr: Vr;
  /**
   * Strings for text VRs ("\\" separates values), numbers for US/SS/UL/FL/FD, bytes or words for
   * OB/OW, items for SQ, and fragments (after a Basic Offset Table) for encapsulated Pixel Data.
   */
  value: string | number[] | Uint8Array | Uint16Array | DataElement[][] | Encapsulated;
}

/** Encapsulated Pixel Data (PS3.5 A.4): a Basic Offset Table item, then one item per fragment. */
export interface Encapsulated {
  offsets: number[];
  fragments: Uint8Array[];
}

export const EXPLICIT_LE = "1.2.840.10008.1.2.1";
export const IMPLICIT_LE = "1.2.840.10008.1.2";
export const EXPLICIT_BE = "1.2.840.10008.1.2.2";
export const DEFLATED = "1.2.840.10008.1.2.1.99";

const LONG_VRS = new Set(["OB", "OW", "SQ", "UN", "UT"]);

interface Encoding {
  explicit: boolean;
  littleEndian: boolean;
}

function valueBytes(e: DataElement, enc: Encoding): Uint8Array {
  const v = e.value;
  if (e.vr === "SQ") {
    const items = (v as DataElement[][]).map((item) => {
      const body = datasetBytes(item, enc);
      const head = new DataView(new ArrayBuffer(8));
      head.setUint16(0, 0xfffe, enc.littleEndian);
      head.setUint16(2, 0xe000, enc.littleEndian);
      head.setUint32(4, body.length, enc.littleEndian);
      return concat([new Uint8Array(head.buffer), body]);
    });
    return concat(items);
  }
  if (typeof v === "string") {
    const pad = e.vr === "UI" ? "\0" : " ";
    const text = v.length % 2 === 0 ? v : v + pad;
    return new Uint8Array(Buffer.from(text, "latin1"));
  }
  if (v instanceof Uint16Array) {
    const out = new DataView(new ArrayBuffer(v.length * 2));
    for (let i = 0; i < v.length; i++) out.setUint16(2 * i, v[i]!, enc.littleEndian);
    return new Uint8Array(out.buffer);
  }
  if (v instanceof Uint8Array) {
    return v.length % 2 === 0 ? v : concat([v, new Uint8Array(1)]);
  }
  const numbers = v as number[];
  const size = { US: 2, SS: 2, UL: 4, FL: 4, FD: 8 }[e.vr as "US"] ?? 2;
  const out = new DataView(new ArrayBuffer(numbers.length * size));
  numbers.forEach((n, i) => {
    if (e.vr === "SS") out.setInt16(2 * i, n, enc.littleEndian);
    else if (e.vr === "UL") out.setUint32(4 * i, n, enc.littleEndian);
    else if (e.vr === "FL") out.setFloat32(4 * i, n, enc.littleEndian);
    else if (e.vr === "FD") out.setFloat64(8 * i, n, enc.littleEndian);
    else out.setUint16(2 * i, n, enc.littleEndian);
  });
  return new Uint8Array(out.buffer);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function item(bytes: Uint8Array, tag = 0xe000): Uint8Array {
  const head = new DataView(new ArrayBuffer(8));
  head.setUint16(0, 0xfffe, true);
  head.setUint16(2, tag, true);
  head.setUint32(4, bytes.length, true);
  return concat([new Uint8Array(head.buffer), bytes]);
}

function encapsulatedBytes(e: DataElement, v: Encapsulated): Uint8Array {
  const head = new DataView(new ArrayBuffer(12));
  head.setUint16(0, e.tag >>> 16, true);
  head.setUint16(2, e.tag & 0xffff, true);
  head.setUint8(4, 0x4f); // "OB"
  head.setUint8(5, 0x42);
  head.setUint32(8, 0xffffffff, true);
  const table = new DataView(new ArrayBuffer(4 * v.offsets.length));
  v.offsets.forEach((o, i) => {
    table.setUint32(4 * i, o, true);
  });
  const fragments = v.fragments.map((f) =>
    item(f.length % 2 === 0 ? f : concat([f, new Uint8Array(1)])),
  );
  return concat([
    new Uint8Array(head.buffer),
    item(new Uint8Array(table.buffer)),
    ...fragments,
    item(new Uint8Array(0), 0xe0dd),
  ]);
}

function elementBytes(e: DataElement, enc: Encoding): Uint8Array {
  if (typeof e.value === "object" && "fragments" in e.value) {
    return encapsulatedBytes(e, e.value);
  }
  const value = valueBytes(e, enc);
  const long = enc.explicit && LONG_VRS.has(e.vr);
  const head = new DataView(new ArrayBuffer(enc.explicit ? (long ? 12 : 8) : 8));
  head.setUint16(0, e.tag >>> 16, enc.littleEndian);
  head.setUint16(2, e.tag & 0xffff, enc.littleEndian);
  if (!enc.explicit) head.setUint32(4, value.length, enc.littleEndian);
  else {
    head.setUint8(4, e.vr.charCodeAt(0));
    head.setUint8(5, e.vr.charCodeAt(1));
    if (long) head.setUint32(8, value.length, enc.littleEndian);
    else head.setUint16(6, value.length, enc.littleEndian);
  }
  return concat([new Uint8Array(head.buffer), value]);
}

function datasetBytes(elements: DataElement[], enc: Encoding): Uint8Array {
  const sorted = [...elements].sort((a, b) => a.tag - b.tag);
  return concat(sorted.map((e) => elementBytes(e, enc)));
}

/** Preamble, "DICM", File Meta Information (explicit VR LE) and the data set in `transferSyntaxUid`. */
export function writePart10(
  elements: DataElement[],
  transferSyntaxUid: string = EXPLICIT_LE,
): Uint8Array {
  const sopClass = elements.find((e) => e.tag === 0x00080016)?.value;
  const sopInstance = elements.find((e) => e.tag === 0x00080018)?.value;
  const le: Encoding = { explicit: true, littleEndian: true };
  const metaBody = datasetBytes(
    [
      { tag: 0x00020001, vr: "OB", value: new Uint8Array([0, 1]) },
      { tag: 0x00020002, vr: "UI", value: typeof sopClass === "string" ? sopClass : "1.2.3" },
      {
        tag: 0x00020003,
        vr: "UI",
        value: typeof sopInstance === "string" ? sopInstance : "1.2.3.4",
      },
      { tag: 0x00020010, vr: "UI", value: transferSyntaxUid },
      { tag: 0x00020012, vr: "UI", value: "1.2.826.0.1.3680043.10.543.9" },
    ],
    le,
  );
  const groupLength = elementBytes({ tag: 0x00020000, vr: "UL", value: [metaBody.length] }, le);
  const enc: Encoding = {
    explicit: transferSyntaxUid !== IMPLICIT_LE,
    littleEndian: transferSyntaxUid !== EXPLICIT_BE,
  };
  let body = datasetBytes(elements, enc);
  if (transferSyntaxUid === DEFLATED) body = new Uint8Array(deflateRawSync(body));
  const prefix = new Uint8Array(132);
  prefix.set([0x44, 0x49, 0x43, 0x4d], 128);
  return concat([prefix, groupLength, metaBody, body]);
}

export interface SyntheticImage {
  rows: number;
  columns: number;
  /** Raw pixel cell values (what goes into Pixel Data, high bits included), one per pixel and frame. */
  pixels: number[] | Uint16Array;
  bitsAllocated?: 8 | 16;
  bitsStored?: number;
  highBit?: number;
  pixelRepresentation?: 0 | 1;
  photometric?: string;
  samplesPerPixel?: number;
  numberOfFrames?: number;
  /** Further attributes (window, rescale, LUTs, spacing...). */
  extra?: DataElement[];
  /** Replace Pixel Data by these bytes or fragments (e.g. too short); omit it with `null`. */
  pixelData?: Uint8Array | Encapsulated | null;
}

/** The elements of a small DX image with the given pixel module. */
export function syntheticImage(img: SyntheticImage): DataElement[] {
  const ba = img.bitsAllocated ?? 16;
  const bs = img.bitsStored ?? ba;
  const samples = img.samplesPerPixel ?? 1;
  const elements: DataElement[] = [
    { tag: 0x00080016, vr: "UI", value: "1.2.840.10008.5.1.4.1.1.1.1" },
    { tag: 0x00080018, vr: "UI", value: "1.2.826.0.1.3680043.10.543.1" },
    { tag: 0x00080060, vr: "CS", value: "DX" },
    { tag: 0x00280002, vr: "US", value: [samples] },
    { tag: 0x00280004, vr: "CS", value: img.photometric ?? "MONOCHROME2" },
    { tag: 0x00280010, vr: "US", value: [img.rows] },
    { tag: 0x00280011, vr: "US", value: [img.columns] },
    { tag: 0x00280100, vr: "US", value: [ba] },
    { tag: 0x00280101, vr: "US", value: [bs] },
    { tag: 0x00280102, vr: "US", value: [img.highBit ?? bs - 1] },
    { tag: 0x00280103, vr: "US", value: [img.pixelRepresentation ?? 0] },
    ...(img.extra ?? []),
  ];
  if (img.numberOfFrames !== undefined) {
    elements.push({ tag: 0x00280008, vr: "IS", value: String(img.numberOfFrames) });
  }
  if (img.pixelData !== null) {
    let value: Uint8Array | Uint16Array | Encapsulated;
    if (img.pixelData) value = img.pixelData;
    else if (ba === 8) value = Uint8Array.from(img.pixels, (p) => p & 0xff);
    else value = Uint16Array.from(img.pixels, (p) => p & 0xffff);
    elements.push({ tag: 0x7fe00010, vr: ba === 8 ? "OB" : "OW", value });
  }
  return elements;
}
