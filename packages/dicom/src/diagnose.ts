/**
 * Why a Part 10 file does not parse, in words a sender can act on. dicom-parser's own exceptions
 * ("buffer overrun", "ByteStream: parameter 'position' …") name neither the element nor the cause,
 * so when it fails the file is walked again here, element by element, the way DCMTK reads it
 * (PS3.5 7.1, 7.5; PS3.10 7.1), and the first thing that stops a reader is named: no File Meta
 * Information, no Transfer Syntax UID, a value longer than what is left of the file, an item or
 * sequence never closed, a VR that is not one, stray bytes after the last element.
 *
 * `unreadableReason` is asked only after a parse failed: it explains, it does not decide what is
 * accepted. `dataSetStartProblem` is the exception, checked on every header, because there the
 * parser can succeed and still be wrong.
 */
import { inflateRawSync } from "node:zlib";
import { LONG_LENGTH_VRS as LONG_VRS } from "./uids.ts";

const UNDEFINED = 0xffffffff;
/** Deeper than any real object; the fuzz suite sends up to 400 levels. */
const MAX_DEPTH = 1000;
/** Same bound as the pixel reader's on an inflated Deflated data set. */
const MAX_INFLATED_BYTES = 2 ** 30;

const SYNTAX_NAMES: Record<string, string> = {
  "1.2.840.10008.1.2": "Implicit VR Little Endian",
  "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
  "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
  "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
};

interface Encoding {
  explicit: boolean;
  littleEndian: boolean;
}

const hex4 = (n: number) => n.toString(16).toUpperCase().padStart(4, "0");
const tagName = (group: number, element: number) => `(${hex4(group)},${hex4(element)})`;

/** A reason found: the walk stops at the first one. */
class Finding extends Error {}

/** The Part 10 framing: preamble and prefix, then group 0002 in explicit VR little endian. */
export function fileMetaProblem(
  bytes: Uint8Array,
): { problem: string } | { transferSyntaxUid: string; dataSetStart: number } {
  if (bytes.length < 132 || Buffer.from(bytes.subarray(128, 132)).toString("latin1") !== "DICM") {
    return {
      problem:
        "not a DICOM Part 10 file: no File Meta Information (no DICM prefix after the 128-byte " +
        "preamble) — a bare data set, whose transfer syntax a reader would have to guess; " +
        "write it as a Part 10 file (e.g. DCMTK dcmconv) or send it over DICOM",
    };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 132;
  let transferSyntaxUid: string | undefined;
  // Group 0002 ends where the next group begins, whatever (0002,0000) says (it may be absent).
  while (p + 8 <= bytes.length && view.getUint16(p, true) === 0x0002) {
    const element = view.getUint16(p + 2, true);
    const vr = String.fromCharCode(bytes[p + 4]!, bytes[p + 5]!);
    const name = `File Meta Information element ${tagName(2, element)}`;
    if (!/^[A-Z]{2}$/.test(vr)) {
      return { problem: `${name} has no explicit VR (PS3.10 7.1: explicit VR little endian)` };
    }
    const long = LONG_VRS.has(vr);
    if (long && p + 12 > bytes.length) {
      return { problem: `the file is truncated inside its File Meta Information, at ${name}` };
    }
    const length = long ? view.getUint32(p + 8, true) : view.getUint16(p + 6, true);
    const start = p + (long ? 12 : 8);
    if (length === UNDEFINED) return { problem: `${name} has an undefined length` };
    if (start + length > bytes.length) {
      return {
        problem:
          `the file is truncated inside its File Meta Information: ${name} declares ` +
          `${length} bytes, ${bytes.length - start} remain`,
      };
    }
    if (element === 0x0010) {
      transferSyntaxUid = Buffer.from(bytes.subarray(start, start + length))
        .toString("latin1")
        .replace(/[\0 ]+$/, "");
    }
    p = start + length;
  }
  if (!transferSyntaxUid) {
    return { problem: "File Meta Information lacks Transfer Syntax UID (0002,0010)" };
  }
  return { transferSyntaxUid, dataSetStart: p };
}

function firstGroupProblem(bytes: Uint8Array, start: number, littleEndian: boolean) {
  if (start + 4 > bytes.length) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const group = view.getUint16(start, littleEndian);
  if (group >= 0x0002) return undefined;
  const element = view.getUint16(start + 2, littleEndian);
  return (
    `the data set starts with element ${tagName(group, element)}: group ${hex4(group)} may ` +
    `not appear in a data set (${group === 0 ? "command elements, PS3.7" : "PS3.5 7.8.1"})`
  );
}

/**
 * Whether the data set starts with group 0000 or 0001. dicom-parser reads every element up to
 * group 0002's end as File Meta Information, so such elements are read as File Meta in explicit
 * VR whatever the transfer syntax: the parse derails, or worse, succeeds with the first elements
 * of the data set swallowed. Checked before any parse is trusted; undefined when the File Meta
 * itself cannot be read (the parse reports that).
 */
export function dataSetStartProblem(bytes: Uint8Array): string | undefined {
  const meta = fileMetaProblem(bytes);
  if ("problem" in meta) return undefined;
  return firstGroupProblem(
    bytes,
    meta.dataSetStart,
    meta.transferSyntaxUid !== "1.2.840.10008.1.2.2",
  );
}

/** Walks one data set encoded as `enc`, throwing a Finding at the first thing a reader cannot pass. */
class Walker {
  private readonly view: DataView;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly syntaxName: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private u16(p: number, enc: Encoding) {
    return this.view.getUint16(p, enc.littleEndian);
  }

  private u32(p: number, enc: Encoding) {
    return this.view.getUint32(p, enc.littleEndian);
  }

  private tagAt(p: number, enc: Encoding) {
    return { group: this.u16(p, enc), element: this.u16(p + 2, enc) };
  }

  private truncated(what: string): never {
    throw new Finding(`the file is truncated: ${what}`);
  }

  /**
   * Elements from `p` to `end`; inside an item of undefined length (`inItem`), up to and past its
   * Item Delimitation Item. Returns where the walk stopped.
   */
  dataSet(p: number, end: number, enc: Encoding, depth: number, inItem?: string): number {
    if (depth > MAX_DEPTH) throw new Finding(`sequences nested deeper than ${MAX_DEPTH} levels`);
    while (p < end) {
      if (p + 8 > end) {
        if (end === this.bytes.length && !inItem) {
          throw new Finding(
            `${end - p} stray byte(s) after the last element, at byte ${p}: too few for an element`,
          );
        }
        this.truncated(`${inItem ?? "an item"} ends ${end - p} byte(s) into an element header`);
      }
      const { group, element } = this.tagAt(p, enc);
      if (group === 0xfffe && element === 0xe00d && inItem) return p + 8;
      p = this.element(p, end, enc, depth);
    }
    if (inItem) this.truncated(`${inItem} is never closed (no Item Delimitation Item)`);
    return p;
  }

  private element(p: number, end: number, enc: Encoding, depth: number): number {
    const { group, element } = this.tagAt(p, enc);
    const name = `element ${tagName(group, element)} at byte ${p}`;
    if (group === 0xfffe) {
      throw new Finding(`${tagName(group, element)} at byte ${p} outside a sequence`);
    }
    let vr: string | undefined;
    let length: number;
    let valueStart: number;
    if (enc.explicit) {
      vr = String.fromCharCode(this.bytes[p + 4]!, this.bytes[p + 5]!);
      if (!/^[A-Z]{2}$/.test(vr)) {
        const looksImplicit = this.u32(p + 4, enc) <= end - p - 8;
        const b = (i: number) => this.bytes[p + i]!.toString(16).toUpperCase().padStart(2, "0");
        throw new Finding(
          `${name} has no VR (bytes ${b(4)} ${b(5)}) although the transfer syntax ` +
            `${this.syntaxName} is explicit VR` +
            (looksImplicit ? ": the data set is encoded implicit VR" : ""),
        );
      }
      if (LONG_VRS.has(vr)) {
        if (p + 12 > end) this.truncated(`${name} ends inside its header`);
        length = this.u32(p + 8, enc);
        valueStart = p + 12;
      } else {
        length = this.u16(p + 6, enc);
        valueStart = p + 8;
      }
    } else {
      length = this.u32(p + 4, enc);
      valueStart = p + 8;
    }
    if (length !== UNDEFINED) {
      const valueEnd = valueStart + length;
      if (valueEnd > end) {
        if (end === this.bytes.length) {
          this.truncated(`${name} declares ${length} bytes, ${end - valueStart} remain`);
        }
        throw new Finding(
          `${name} declares ${length} bytes and runs past the end of the item holding it (byte ${end})`,
        );
      }
      if (vr === "SQ") this.items(valueStart, valueEnd, enc, depth, name);
      return valueEnd;
    }
    // Undefined length: a sequence (explicit SQ; in implicit VR, one whose first item follows),
    // a UN sequence (its items implicit VR little endian, PS3.5 6.2.2), or encapsulated pixels.
    if (group === 0x7fe0 && element === 0x0010) return this.fragments(valueStart, enc, name);
    const itemEncoding: Encoding =
      vr === "UN" ? { explicit: false, littleEndian: true } : { ...enc };
    if (vr !== undefined && vr !== "SQ" && vr !== "UN") {
      throw new Finding(
        `${name} (VR ${vr}) has an undefined length, which only SQ and UN may have`,
      );
    }
    return this.items(valueStart, undefined, itemEncoding, depth, name);
  }

  /** Items of a sequence: up to `end`, or (undefined length) past its Sequence Delimitation Item. */
  private items(
    p: number,
    end: number | undefined,
    enc: Encoding,
    depth: number,
    sequence: string,
  ): number {
    const limit = end ?? this.bytes.length;
    for (let n = 1; ; n++) {
      if (end !== undefined && p === end) return p;
      if (p + 8 > limit) {
        if (end === undefined) {
          this.truncated(
            `the sequence ${sequence} is never closed (no Sequence Delimitation Item)`,
          );
        }
        throw new Finding(`the sequence ${sequence} ends inside an item header`);
      }
      const { group, element } = this.tagAt(p, enc);
      if (group === 0xfffe && element === 0xe0dd && end === undefined) return p + 8;
      if (group !== 0xfffe || element !== 0xe000) {
        throw new Finding(
          `the sequence ${sequence} holds ${tagName(group, element)} at byte ${p} where an item ` +
            "(FFFE,E000) belongs",
        );
      }
      const length = this.u32(p + 4, enc);
      const item = `item ${n} of the sequence ${sequence}`;
      if (length === UNDEFINED) {
        p = this.dataSet(p + 8, limit, enc, depth + 1, item);
      } else {
        if (p + 8 + length > limit) {
          if (limit === this.bytes.length) {
            this.truncated(`${item} declares ${length} bytes, ${limit - p - 8} remain`);
          }
          throw new Finding(`${item} runs past the end of its sequence`);
        }
        this.dataSet(p + 8, p + 8 + length, enc, depth + 1);
        p += 8 + length;
      }
    }
  }

  /** Encapsulated Pixel Data: items of defined length, then the Sequence Delimitation Item. */
  private fragments(p: number, enc: Encoding, name: string): number {
    for (;;) {
      if (p + 8 > this.bytes.length) {
        this.truncated(
          `the encapsulated pixel data of ${name} is never closed (no Sequence Delimitation Item)`,
        );
      }
      const { group, element } = this.tagAt(p, enc);
      const length = this.u32(p + 4, enc);
      if (group === 0xfffe && element === 0xe0dd) return p + 8;
      if (group !== 0xfffe || element !== 0xe000 || length === UNDEFINED) {
        throw new Finding(
          `the encapsulated pixel data of ${name} holds ${tagName(group, element)} at byte ${p} ` +
            "where a fragment item (FFFE,E000) of defined length belongs",
        );
      }
      if (p + 8 + length > this.bytes.length) {
        this.truncated(
          `a pixel data fragment at byte ${p} declares ${length} bytes, ${this.bytes.length - p - 8} remain`,
        );
      }
      p += 8 + length;
    }
  }
}

/**
 * The first reason the Part 10 file in `bytes` cannot be read, or undefined when none is found
 * (the caller then says what the parser said).
 */
export function unreadableReason(bytes: Uint8Array): string | undefined {
  const meta = fileMetaProblem(bytes);
  if ("problem" in meta) return meta.problem;
  const { transferSyntaxUid: ts, dataSetStart } = meta;
  const syntaxName = SYNTAX_NAMES[ts] ? `${SYNTAX_NAMES[ts]} (${ts})` : ts;
  let data = bytes;
  let start = dataSetStart;
  if (ts === "1.2.840.10008.1.2.1.99") {
    try {
      data = inflateRawSync(bytes.subarray(dataSetStart), { maxOutputLength: MAX_INFLATED_BYTES });
    } catch (error) {
      return `the Deflated data set could not be inflated: ${(error as Error).message}`;
    }
    start = 0;
  }
  // Every transfer syntax but these two is explicit VR little endian (PS3.5 A.4).
  const enc: Encoding = {
    explicit: ts !== "1.2.840.10008.1.2",
    littleEndian: ts !== "1.2.840.10008.1.2.2",
  };
  const first = firstGroupProblem(data, start, enc.littleEndian);
  if (first) return first;
  try {
    new Walker(data, syntaxName).dataSet(start, data.length, enc, 0);
  } catch (error) {
    if (error instanceof Finding) return error.message;
    if (error instanceof RangeError) return `the file is truncated: ${error.message}`;
    throw error;
  }
  return undefined;
}
