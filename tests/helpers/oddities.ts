/**
 * Files with the oddities DCMTK, GDCM and PACS exports really write — empty last File Meta
 * elements, no (0002,0000), odd-length values, private sequences of undefined length, UN values,
 * bytes after the data set, a cut file — made by byte surgery on a real file (pydicom's
 * MR_small, explicit and implicit VR little endian) so that each differs from it in one respect.
 */

import { LONG_LENGTH_VRS as LONG_VRS } from "@kneegrade/dicom";
import dicomParser from "dicom-parser";

const UNDEFINED = 0xffffffff;

export interface Part10 {
  /** Group 0002 elements, header and value, in file order, (0002,0000) excluded. */
  meta: { tag: number; bytes: Buffer }[];
  dataSet: Buffer;
  explicit: boolean;
}

/**
 * A Part 10 file cut into its File Meta elements and its data set: the group ends where
 * (0002,0000) says, or without it where group 0002 ends.
 */
export function splitPart10(file: Buffer): Part10 {
  const meta: Part10["meta"] = [];
  let p = 132;
  let syntax = "";
  const hasGroupLength = file.readUInt32LE(p) === 0x00000002;
  const groupEnd = hasGroupLength ? p + 12 + file.readUInt32LE(p + 8) : file.length;
  while (p + 8 <= groupEnd && file.readUInt16LE(p) === 0x0002) {
    const tag = (0x0002 << 16) | file.readUInt16LE(p + 2);
    const vr = file.toString("latin1", p + 4, p + 6);
    const long = LONG_VRS.has(vr);
    const length = long ? file.readUInt32LE(p + 8) : file.readUInt16LE(p + 6);
    const end = p + (long ? 12 : 8) + length;
    if (tag === 0x00020010) syntax = file.toString("latin1", end - length, end).replace(/\0/g, "");
    if (tag !== 0x00020000) meta.push({ tag, bytes: file.subarray(p, end) });
    p = end;
  }
  return { meta, dataSet: file.subarray(p), explicit: syntax !== "1.2.840.10008.1.2" };
}

/** Preamble, prefix, (0002,0000) unless `groupLength` is false, the meta elements, the data set. */
export function joinPart10(parts: Part10, opts: { groupLength?: boolean } = {}): Buffer {
  const body = Buffer.concat(parts.meta.map((m) => m.bytes));
  const prefix = Buffer.alloc(132);
  prefix.write("DICM", 128, "latin1");
  const groupLength =
    opts.groupLength === false ? Buffer.alloc(0) : element(0x00020000, "UL", u32(body.length));
  return Buffer.concat([prefix, groupLength, body, parts.dataSet]);
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

/**
 * One element, little endian, explicit VR unless `explicit` is false; `value` "undefined" writes
 * the undefined length (the caller appends the items and the delimiter). Odd values stay odd.
 */
export function element(
  tag: number,
  vr: string,
  value: Buffer | string | "undefined",
  explicit = true,
): Buffer {
  const bytes =
    value === "undefined"
      ? Buffer.alloc(0)
      : typeof value === "string"
        ? Buffer.from(value, "latin1")
        : value;
  const length = value === "undefined" ? UNDEFINED : bytes.length;
  const head = Buffer.alloc(explicit && LONG_VRS.has(vr) ? 12 : 8);
  head.writeUInt16LE(tag >>> 16, 0);
  head.writeUInt16LE(tag & 0xffff, 2);
  if (!explicit) head.writeUInt32LE(length, 4);
  else {
    head.write(vr, 4, "latin1");
    if (head.length === 12) head.writeUInt32LE(length, 8);
    else head.writeUInt16LE(length, 6);
  }
  return Buffer.concat([head, bytes]);
}

function delimiter(code: number, length = 0): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(0xfffe, 0);
  b.writeUInt16LE(code, 2);
  b.writeUInt32LE(length, 4);
  return b;
}

/** An item of undefined length holding `content`, closed by its Item Delimitation Item. */
export function undefinedItem(content: Buffer): Buffer {
  return Buffer.concat([delimiter(0xe000, UNDEFINED), content, delimiter(0xe00d)]);
}

/** A sequence of undefined length (VR SQ, or UN whose items are implicit VR, CP-246). */
export function undefinedSequence(tag: number, vr: "SQ" | "UN", items: Buffer[], explicit = true) {
  return Buffer.concat([element(tag, vr, "undefined", explicit), ...items, delimiter(0xe0dd)]);
}

/** Where each top-level element of the data set starts (offsets into `parts.dataSet`). */
function topLevelStarts(parts: Part10): { tag: number; start: number }[] {
  const file = joinPart10(parts);
  const dataStart = file.length - parts.dataSet.length;
  const ds = dicomParser.parseDicom(new Uint8Array(file));
  return Object.values(ds.elements)
    .filter((el) => el.dataOffset > dataStart)
    .map((el) => {
      const header = !parts.explicit ? 8 : LONG_VRS.has(el.vr ?? "") ? 12 : 8;
      return {
        tag: Number.parseInt(el.tag.slice(1), 16),
        start: el.dataOffset - header - dataStart,
      };
    })
    .sort((a, b) => a.start - b.start);
}

/** The data set with `bytes` (elements starting at `tag`) inserted where `tag` belongs. */
export function insertElements(parts: Part10, tag: number, bytes: Buffer): Part10 {
  const next = topLevelStarts(parts).find((e) => e.tag > tag);
  const at = next ? next.start : parts.dataSet.length;
  const dataSet = Buffer.concat([parts.dataSet.subarray(0, at), bytes, parts.dataSet.subarray(at)]);
  return { ...parts, dataSet };
}

/** The data set with the top-level element `tag` removed. */
export function removeElement(parts: Part10, tag: number): Part10 {
  const starts = topLevelStarts(parts);
  const i = starts.findIndex((e) => e.tag === tag);
  if (i < 0) throw new Error(`no element ${tag.toString(16)} to remove`);
  const end = starts[i + 1]?.start ?? parts.dataSet.length;
  const dataSet = Buffer.concat([
    parts.dataSet.subarray(0, starts[i]!.start),
    parts.dataSet.subarray(end),
  ]);
  return { ...parts, dataSet };
}

/** Where Pixel Data's value starts in the whole file. */
export function pixelDataOffset(file: Buffer): number {
  const el = dicomParser.parseDicom(new Uint8Array(file), { untilTag: "x7fe00010" }).elements
    .x7fe00010;
  if (!el) throw new Error("no Pixel Data");
  return el.dataOffset;
}

/** The oddities, each a function of the explicit (MR_small) and implicit (MR_small_implicit) base. */
export const ODDITIES: Record<string, (base: { explicit: Buffer; implicit: Buffer }) => Buffer> = {
  /** GDCM and some DCMTK versions write (0002,0013)/(0002,0016) empty, last in the group. */
  "meta-empty-last-elements": ({ explicit }) => {
    const parts = splitPart10(explicit);
    const meta = parts.meta.map((m) =>
      m.tag === 0x00020013 || m.tag === 0x00020016
        ? { tag: m.tag, bytes: element(m.tag, m.tag === 0x00020013 ? "SH" : "AE", "") }
        : m,
    );
    return joinPart10({ ...parts, meta });
  },
  /** (0002,0000) is Type 1, yet old writers leave it out. */
  "meta-no-group-length": ({ explicit }) =>
    joinPart10(splitPart10(explicit), { groupLength: false }),
  /** A transfer syntax claim inside the data set: it would override the negotiated one. */
  "meta-element-in-data-set": ({ explicit }) => {
    const parts = splitPart10(explicit);
    const claim = element(0x00020010, "UI", "1.2.840.10008.1.2.4.50\0");
    return joinPart10({ ...parts, dataSet: Buffer.concat([claim, parts.dataSet]) });
  },
  /** The same with an empty group 0002 element: its value starts after the group's end too. */
  "meta-empty-element-in-data-set": ({ explicit }) => {
    const parts = splitPart10(explicit);
    const empty = element(0x00020016, "AE", "");
    return joinPart10({ ...parts, dataSet: Buffer.concat([empty, parts.dataSet]) });
  },
  /** Values of odd length (PS3.5 7.1.1 wants them padded): a private creator and block, a text. */
  "odd-length-values": ({ explicit }) => {
    let parts = removeElement(splitPart10(explicit), 0x00204000);
    parts = insertElements(
      parts,
      0x00090010,
      Buffer.concat([element(0x00090010, "LO", "ODD CREATOR"), element(0x00091001, "LO", "odd")]),
    );
    parts = insertElements(parts, 0x00204000, element(0x00204000, "LT", "odd length!"));
    return joinPart10(parts);
  },
  /** A private sequence of undefined length holding another, as nested_priv_SQ has them. */
  "private-sequence-undefined-length": ({ explicit }) =>
    joinPart10(insertElements(splitPart10(explicit), 0x00090010, privateSequences(true))),
  "private-sequence-undefined-length-implicit": ({ implicit }) =>
    joinPart10(insertElements(splitPart10(implicit), 0x00090010, privateSequences(false))),
  /**
   * UN values: a private block of unknown VR (odd length), a UN sequence of undefined length
   * (CP-246) and a standard attribute, Protocol Name, sent as UN by a node that did not know it.
   */
  "un-values": ({ explicit }) => {
    const inner = Buffer.concat([
      element(0x00090010, "LO", "UN CREATOR", false),
      element(0x00091011, "LO", "inside UN", false),
    ]);
    let parts = insertElements(
      splitPart10(explicit),
      0x00090010,
      Buffer.concat([
        element(0x00090010, "LO", "UN CREATOR"),
        element(0x00091001, "UN", Buffer.from([1, 2, 3, 4, 5])),
        undefinedSequence(0x00091002, "UN", [undefinedItem(inner)]),
      ]),
    );
    parts = insertElements(parts, 0x00181030, element(0x00181030, "UN", "KNEE AP "));
    return joinPart10(parts);
  },
  // MR_small itself ends with Data Set Trailing Padding (FFFC,FFFC) after the pixel data.
  /** Zero bytes after the last element, not wrapped in (FFFC,FFFC): media that pad to a block. */
  "trailing-zero-bytes": ({ explicit }) => Buffer.concat([explicit, Buffer.alloc(16)]),
  /** Fewer bytes after the last element than an element header has: neither DCMTK nor we read it. */
  "trailing-stray-bytes": ({ explicit }) => Buffer.concat([explicit, Buffer.alloc(6)]),
  /** Cut inside the header, half-way through the value of Patient's Name. */
  "truncated-in-header": ({ explicit }) => {
    const file = explicit;
    const at = file.indexOf(Buffer.from("CompressedSamples", "latin1"));
    return file.subarray(0, at + 8);
  },
  /** Cut half-way through the pixel data. */
  "truncated-in-pixel-data": ({ explicit }) => {
    const start = pixelDataOffset(explicit);
    return explicit.subarray(0, start + Math.floor((explicit.length - start) / 2));
  },
};

function privateSequences(explicit: boolean): Buffer {
  const innermost = Buffer.concat([
    element(0x00090010, "LO", "PRIV SQ CREATOR ", explicit),
    element(0x00091001, "LO", "double nested", explicit),
  ]);
  const inner = Buffer.concat([
    element(0x00090010, "LO", "PRIV SQ CREATOR ", explicit),
    undefinedSequence(0x00091010, "SQ", [undefinedItem(innermost)], explicit),
    element(0x00091011, "LO", "nested", explicit),
  ]);
  return Buffer.concat([
    element(0x00090010, "LO", "PRIV SQ CREATOR ", explicit),
    undefinedSequence(0x00091010, "SQ", [undefinedItem(inner)], explicit),
  ]);
}
