/**
 * A seeded DICOM fuzzer for the listener (tests/integration/fuzz.slow.test.ts).
 *
 * - A tiny PRNG (mulberry32). Object `i` of seed `s` comes from its own generator seeded by
 *   (s, i), so any single object can be rebuilt alone (FUZZ_ONLY) exactly as it was sent in a run.
 * - An explicit VR little endian element codec that can also write what a broken modality writes:
 *   wrong VRs, lying length fields, duplicate and out-of-order tags, sequences left open.
 * - Small valid base objects: the WG04 CR radiograph (a real header) scaled to 64×64 by DCMTK, its
 *   RLE and JPEG Lossless encodings, and two synthetic DX images. Each is a few KB.
 * - The mutations, and a sender that puts the already-encoded (mutated) data set bytes on the wire
 *   through dcmjs-dimse's own Client: the association, the C-STORE command set and the P-DATA
 *   framing are the real ones; only the data set (and, on purpose, sometimes the command's UIDs)
 *   is hostile. dcmjs-dimse never parses or re-encodes the data set: `RawDataset` hands it the bytes.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { SOP_CLASSES, TRANSFER_SYNTAXES } from "@kneegrade/dicom";
import dimse from "dcmjs-dimse";
import { tool } from "./dcmtk.ts";
import { WG04_DIR } from "./paths.ts";

// ---------------------------------------------------------------------------------------------
// Randomness

import { LONG_LENGTH_VRS as LONG_VRS } from "@kneegrade/dicom";
import { mulberry32 } from "@kneegrade/sample-radiographs";

export { mulberry32 };

/** The seed of object `index` in a run seeded `seed` (a murmur3-style mix of both). */
export function objectSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  u32(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  /** A valid UUID-derived UID (PS3.5 B.2): "2.25." and a 128-bit decimal. */
  uid(): string {
    let n = 0n;
    for (let i = 0; i < 4; i++) n = (n << 32n) | BigInt(this.u32());
    return `2.25.${n.toString()}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Explicit VR little endian elements

/** One top-level element. `value` of an undefined-length element holds its items and delimiter. */
export interface Element {
  /** (gggg,eeee) as 0xggggeeee. */
  tag: number;
  /** The two VR characters as written (a fuzzed VR need not be a real one). */
  vr: string;
  value: Buffer;
  undefinedLength?: boolean;
  /** Written in the length field instead of the value's length (a lying length). */
  length?: number;
}

export const TAG = {
  sopClassUid: 0x00080016,
  sopInstanceUid: 0x00080018,
  modality: 0x00080060,
  studyDescription: 0x00081030,
  bodyPartExamined: 0x00180015,
  studyInstanceUid: 0x0020000d,
  seriesInstanceUid: 0x0020000e,
  rows: 0x00280010,
  columns: 0x00280011,
  bitsAllocated: 0x00280100,
  bitsStored: 0x00280101,
  highBit: 0x00280102,
  pixelData: 0x7fe00010,
} as const;

export const UID_TAGS = {
  study: TAG.studyInstanceUid,
  series: TAG.seriesInstanceUid,
  sop: TAG.sopInstanceUid,
  sopClass: TAG.sopClassUid,
} as const;

export function tagName(tag: number): string {
  const hex = (tag >>> 0).toString(16).padStart(8, "0").toUpperCase();
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}

function header(tag: number, vr: string, length: number): Buffer {
  const long = LONG_VRS.has(vr);
  const out = Buffer.alloc(long ? 12 : 8);
  out.writeUInt16LE(tag >>> 16, 0);
  out.writeUInt16LE(tag & 0xffff, 2);
  out.write(vr.padEnd(2, "\0").slice(0, 2), 4, "latin1");
  if (long) out.writeUInt32LE(length >>> 0, 8);
  else out.writeUInt16LE(length & 0xffff, 6);
  return out;
}

export function encodeElement(e: Element): Buffer {
  const length = e.length ?? (e.undefinedLength ? 0xffffffff : e.value.length);
  return Buffer.concat([header(e.tag, e.vr, length), e.value]);
}

export function encodeDataset(elements: Element[]): Buffer {
  return Buffer.concat(elements.map(encodeElement));
}

/** An item (FFFE,E000) of defined length around `body`. */
export function item(body: Buffer, tag = 0xe000): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(0xfffe, 0);
  h.writeUInt16LE(tag, 2);
  h.writeUInt32LE(body.length, 4);
  return Buffer.concat([h, body]);
}

const SEQUENCE_DELIMITER = Buffer.from("feffdde000000000", "hex");
const ITEM_DELIMITER = Buffer.from("feff0de000000000", "hex");
const UNDEFINED_ITEM = Buffer.from("feff00e0ffffffff", "hex");

export function textElement(tag: number, vr: string, value: string): Element {
  const padded = value.length % 2 === 0 ? value : value + (vr === "UI" ? "\0" : " ");
  return { tag, vr, value: Buffer.from(padded, "latin1") };
}

export function usElement(tag: number, ...values: number[]): Element {
  const value = Buffer.alloc(2 * values.length);
  values.forEach((v, i) => {
    value.writeUInt16LE(v & 0xffff, 2 * i);
  });
  return { tag, vr: "US", value };
}

export function sequenceElement(tag: number, items: Element[][]): Element {
  return { tag, vr: "SQ", value: Buffer.concat(items.map((i) => item(encodeDataset(i)))) };
}

/** Replaces every element with this tag, or inserts one in tag order. */
export function setElement(elements: Element[], e: Element): void {
  const at = elements.findIndex((x) => x.tag === e.tag);
  if (at >= 0) {
    for (let i = elements.length - 1; i > at; i--) {
      if (elements[i]!.tag === e.tag) elements.splice(i, 1);
    }
    elements[at] = e;
    return;
  }
  insertInOrder(elements, e);
}

export function insertInOrder(elements: Element[], e: Element): void {
  const at = elements.findIndex((x) => x.tag >>> 0 > e.tag >>> 0);
  elements.splice(at < 0 ? elements.length : at, 0, e);
}

/** Skips an undefined-length value (items up to the sequence delimiter); returns the end. */
function skipUndefined(buf: Buffer, start: number): number {
  let pos = start;
  while (pos + 8 <= buf.length) {
    const group = buf.readUInt16LE(pos);
    const elem = buf.readUInt16LE(pos + 2);
    const length = buf.readUInt32LE(pos + 4);
    pos += 8;
    if (group === 0xfffe && elem === 0xe0dd) return pos;
    if (group !== 0xfffe || elem !== 0xe000) throw new Error(`unexpected tag at ${pos - 8}`);
    pos = length === 0xffffffff ? skipItemElements(buf, pos) : pos + length;
  }
  throw new Error("undefined-length value not terminated");
}

function skipItemElements(buf: Buffer, start: number): number {
  let pos = start;
  while (pos + 8 <= buf.length) {
    if (buf.readUInt16LE(pos) === 0xfffe && buf.readUInt16LE(pos + 2) === 0xe00d) return pos + 8;
    const [, next] = readElement(buf, pos);
    pos = next;
  }
  throw new Error("item not terminated");
}

function readElement(buf: Buffer, pos: number): [Element, number] {
  const tag = ((buf.readUInt16LE(pos) << 16) | buf.readUInt16LE(pos + 2)) >>> 0;
  const vr = buf.toString("latin1", pos + 4, pos + 6);
  const long = LONG_VRS.has(vr);
  const length = long ? buf.readUInt32LE(pos + 8) : buf.readUInt16LE(pos + 6);
  const start = pos + (long ? 12 : 8);
  if (length === 0xffffffff) {
    const end = skipUndefined(buf, start);
    return [{ tag, vr, value: buf.subarray(start, end), undefinedLength: true }, end];
  }
  return [{ tag, vr, value: buf.subarray(start, start + length) }, start + length];
}

/** The top-level elements of a well-formed explicit VR little endian data set. */
export function parseExplicitLe(buf: Buffer): Element[] {
  const out: Element[] = [];
  let pos = 0;
  while (pos + 8 <= buf.length) {
    const [e, next] = readElement(buf, pos);
    out.push({ ...e, value: Buffer.from(e.value) });
    pos = next;
  }
  return out;
}

/** A Part 10 file's transfer syntax and data set (everything after the File Meta group). */
export function splitPart10(file: Buffer): { transferSyntaxUid: string; dataset: Buffer } {
  const groupLength = file.readUInt32LE(132 + 8);
  const metaEnd = 132 + 12 + groupLength;
  const meta = parseExplicitLe(file.subarray(132, metaEnd));
  const ts = meta.find((e) => e.tag === 0x00020010);
  if (!ts) throw new Error("no transfer syntax in the file meta information");
  return {
    transferSyntaxUid: ts.value.toString("latin1").replace(/\0+$/, ""),
    dataset: file.subarray(metaEnd),
  };
}

/**
 * The UID grammar of PS3.5 9.1 (at most 64 characters; digit components without leading zeros,
 * separated by single dots), written out here so the suite holds the listener to the standard
 * rather than to the listener's own check.
 */
export function isValidUid(value: string): boolean {
  return value.length <= 64 && /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(value);
}

// ---------------------------------------------------------------------------------------------
// Base objects

export interface Base {
  name: string;
  transferSyntaxUid: string;
  sopClassUid: string;
  elements: Element[];
}

export const NATIVE_SYNTAXES: readonly string[] = [
  TRANSFER_SYNTAXES.explicitVrLittleEndian,
  TRANSFER_SYNTAXES.implicitVrLittleEndian,
  TRANSFER_SYNTAXES.explicitVrBigEndian,
  "1.2.840.10008.1.2.1.99",
];

/** The radiograph storage classes the listener accepts (the command must carry one of them). */
const ACCEPTED_CLASSES = [
  SOP_CLASSES.computedRadiography,
  SOP_CLASSES.digitalXRayForPresentation,
  SOP_CLASSES.digitalXRayForProcessing,
];

function syntheticDx(opts: {
  sopClassUid: string;
  rows: number;
  columns: number;
  bits: 8 | 16;
  photometric: string;
  signed: boolean;
  withSequence: boolean;
}): Element[] {
  const n = opts.rows * opts.columns;
  const pixels = Buffer.alloc(n * (opts.bits / 8));
  for (let i = 0; i < n; i++) {
    const v = ((i % opts.columns) * 7 + Math.floor(i / opts.columns) * 3) % 4096;
    if (opts.bits === 8) pixels[i] = v & 0xff;
    else pixels.writeUInt16LE(v, 2 * i);
  }
  const elements: Element[] = [
    textElement(0x00080008, "CS", "ORIGINAL\\PRIMARY"),
    textElement(TAG.sopClassUid, "UI", opts.sopClassUid),
    textElement(TAG.sopInstanceUid, "UI", "1.2.3"),
    textElement(0x00080020, "DA", "20261201"),
    textElement(0x00080050, "SH", "FUZZ0001"),
    textElement(0x00080068, "CS", "FOR PRESENTATION"),
    textElement(TAG.modality, "CS", "DX"),
    textElement(TAG.studyDescription, "LO", "XR KNEE AP (fuzz base)"),
    textElement(0x00100010, "PN", "FUZZ^BASE"),
    textElement(0x00100020, "LO", "FUZZ-0001"),
    textElement(TAG.bodyPartExamined, "CS", "KNEE"),
    textElement(0x00185101, "CS", "AP"),
    textElement(TAG.studyInstanceUid, "UI", "1.2.3"),
    textElement(TAG.seriesInstanceUid, "UI", "1.2.3"),
    textElement(0x00200020, "CS", "L\\F"),
    textElement(0x00200062, "CS", "R"),
    usElement(0x00280002, 1),
    textElement(0x00280004, "CS", opts.photometric),
    usElement(TAG.rows, opts.rows),
    usElement(TAG.columns, opts.columns),
    usElement(TAG.bitsAllocated, opts.bits),
    usElement(TAG.bitsStored, opts.bits === 8 ? 8 : 12),
    usElement(TAG.highBit, opts.bits === 8 ? 7 : 11),
    usElement(0x00280103, opts.signed ? 1 : 0),
    { tag: TAG.pixelData, vr: opts.bits === 8 ? "OB" : "OW", value: pixels },
  ];
  if (opts.withSequence) {
    insertInOrder(
      elements,
      sequenceElement(0x00540220, [
        [
          textElement(0x00080100, "SH", "R-10206"),
          textElement(0x00080102, "SH", "SRT"),
          textElement(0x00080104, "LO", "frontal"),
        ],
      ]),
    );
  }
  return elements;
}

/**
 * The valid starting points, each a few KB: WG04's real CR header with its pixels scaled to 64×64
 * (DCMTK dcmscale), the same as RLE and JPEG Lossless (dcmcrle, dcmcjpeg), and two synthetic DX
 * images (8-bit with a sequence; 16-bit signed, for processing). All route as knees.
 */
export async function buildBases(dir: string): Promise<Base[]> {
  const small = join(dir, "cr-64.dcm");
  const steps: [string, string[]][] = [
    ["dcmscale", ["+Sxv", "64", join(WG04_DIR, "RG3_UNC.dcm"), small]],
    ["dcmcrle", [small, join(dir, "cr-64-rle.dcm")]],
    ["dcmcjpeg", [small, join(dir, "cr-64-jpll.dcm")]],
  ];
  for (const [cmd, args] of steps) {
    const r = await tool(cmd, args);
    if (r.code !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  }
  const bases: Base[] = [];
  for (const [name, file] of [
    ["cr-wg04-64", small],
    ["cr-wg04-64-rle", join(dir, "cr-64-rle.dcm")],
    ["cr-wg04-64-jpeg-lossless", join(dir, "cr-64-jpll.dcm")],
  ] as const) {
    const { transferSyntaxUid, dataset } = splitPart10(await readFile(file));
    const elements = parseExplicitLe(dataset);
    setElement(elements, textElement(TAG.bodyPartExamined, "CS", "KNEE"));
    bases.push({ name, transferSyntaxUid, sopClassUid: SOP_CLASSES.computedRadiography, elements });
  }
  bases.push({
    name: "dx-synthetic-8bit",
    transferSyntaxUid: TRANSFER_SYNTAXES.explicitVrLittleEndian,
    sopClassUid: SOP_CLASSES.digitalXRayForPresentation,
    elements: syntheticDx({
      sopClassUid: SOP_CLASSES.digitalXRayForPresentation,
      rows: 32,
      columns: 48,
      bits: 8,
      photometric: "MONOCHROME2",
      signed: false,
      withSequence: true,
    }),
  });
  bases.push({
    name: "dx-synthetic-16bit",
    transferSyntaxUid: TRANSFER_SYNTAXES.explicitVrLittleEndian,
    sopClassUid: SOP_CLASSES.digitalXRayForProcessing,
    elements: syntheticDx({
      sopClassUid: SOP_CLASSES.digitalXRayForProcessing,
      rows: 40,
      columns: 40,
      bits: 16,
      photometric: "MONOCHROME1",
      signed: true,
      withSequence: false,
    }),
  });
  return bases;
}

// ---------------------------------------------------------------------------------------------
// Mutations

/** What a mutation did that the test can hold the listener to. */
export type Flag =
  | "control"
  | "hostile-uid"
  | "command-mismatch"
  | "encapsulated-under-native"
  | "native-under-compressed"
  | "meta-in-dataset"
  | "byte-level";

export interface FuzzObject {
  index: number;
  base: string;
  /** The transfer syntax the data set is sent under (its presentation context's). */
  transferSyntaxUid: string;
  /** The C-STORE command's Affected SOP Class / Instance UIDs. */
  command: { sopClassUid: string; sopInstanceUid: string };
  /** The UIDs the data set was given before any byte-level mutation. */
  uids: { study: string; series: string; sop: string };
  dataset: Buffer;
  /** The mutation kinds applied, in order. */
  kinds: string[];
  /** A line per mutation, human-readable. */
  mutations: string[];
  flags: Flag[];
}

export interface UidPools {
  studies: { study: string; series: string[] }[];
}

/** A few studies with two series each, shared by the objects of one run (as from a modality). */
export function uidPools(seed: number, studies = 40): UidPools {
  const rng = new Rng(objectSeed(seed, -1));
  return {
    studies: Array.from({ length: studies }, () => ({
      study: rng.uid(),
      series: [rng.uid(), rng.uid()],
    })),
  };
}

/**
 * UIDs that must never become paths, queue keys or accepted objects. Every one of them is at
 * most one directory hop (`..`) deep, so a listener that does make paths of them stays inside the
 * test's sandbox (SPOOL_DIR is four directories below it).
 */
export const HOSTILE_UIDS: readonly string[] = [
  "../x",
  "..",
  "1.2.3.x",
  "1.2..3",
  "01.2",
  `1.${"2".repeat(63)}`, // 65 characters
  "1.2.3\u0001",
  "1.2.3\n4",
  "",
  " ",
  "1.2.3/4",
  "1.2\\3.4",
  "1.2.3.4.",
  ".1.2.3",
  "1.2.3\u00ff",
  "x",
  '1.2.3\'; DROP TABLE "Study";--',
  "1.2.3 OR 1=1",
];

interface Ctx {
  rng: Rng;
  index: number;
  base: Base;
  elements: Element[];
  ts: string;
  command: { sopClassUid: string; sopInstanceUid: string };
  uids: { study: string; series: string; sop: string };
  notes: string[];
  flags: Set<Flag>;
}

type Structural = (ctx: Ctx) => void;
type ByteLevel = (ctx: Ctx, bytes: Buffer) => Buffer;

const isNative = (ts: string) => NATIVE_SYNTAXES.includes(ts);

function pickElement(ctx: Ctx, preferred: readonly number[]): Element | undefined {
  const elements = ctx.elements;
  if (elements.length === 0) return undefined;
  if (ctx.rng.chance(0.6)) {
    const candidates = elements.filter((e) => preferred.includes(e.tag));
    if (candidates.length > 0) return ctx.rng.pick(candidates);
  }
  return ctx.rng.pick(elements);
}

const INTERESTING_TAGS = [
  TAG.sopClassUid,
  TAG.sopInstanceUid,
  TAG.studyInstanceUid,
  TAG.seriesInstanceUid,
  TAG.rows,
  TAG.columns,
  TAG.bitsAllocated,
  TAG.pixelData,
  TAG.bodyPartExamined,
  0x00540220,
  0x00082112,
];

const hostileUid: Structural = (ctx) => {
  const { rng } = ctx;
  const target = rng.pick(["study", "study", "series", "sop", "sopClass"] as const);
  let value = rng.pick(HOSTILE_UIDS);
  // Half of them made unique per object, so that they are new studies / instances, not replacements.
  if (value.length > 2 && rng.chance(0.5)) value = `${value}${ctx.index}`;
  setElement(ctx.elements, textElement(UID_TAGS[target], "UI", value));
  if (target === "sop") {
    ctx.uids.sop = value;
    // The command follows the data set, as a modality's would: the listener's UID check passes.
    if (!ctx.flags.has("command-mismatch")) ctx.command.sopInstanceUid = value;
  } else if (target === "study") ctx.uids.study = value;
  else if (target === "series") ctx.uids.series = value;
  ctx.flags.add("hostile-uid");
  ctx.notes.push(`hostile-uid: ${target} = ${JSON.stringify(value)}`);
};

const rowsColumns: Structural = (ctx) => {
  const { rng } = ctx;
  const which = rng.pick(["rows", "columns", "both"] as const);
  const value = rng.pick([0, 1, 65535, 32768]);
  if (which !== "columns") setElement(ctx.elements, usElement(TAG.rows, value));
  if (which !== "rows") setElement(ctx.elements, usElement(TAG.columns, value));
  ctx.notes.push(`rows/columns: ${which} = ${value}`);
};

const bitsAllocated: Structural = (ctx) => {
  const { rng } = ctx;
  const value = rng.pick([0, 1, 7, 9, 12, 24, 32, 33, 64, 65535]);
  setElement(ctx.elements, usElement(TAG.bitsAllocated, value));
  let note = `bits-allocated = ${value}`;
  if (rng.chance(0.3)) {
    setElement(ctx.elements, usElement(TAG.bitsStored, (value + 4) & 0xffff));
    setElement(ctx.elements, usElement(TAG.highBit, 40));
    note += `, bits-stored = ${(value + 4) & 0xffff}, high-bit = 40`;
  }
  ctx.notes.push(note);
};

const pixelDataLength: Structural = (ctx) => {
  const { rng } = ctx;
  const at = ctx.elements.findIndex((e) => e.tag === TAG.pixelData);
  if (at < 0) {
    ctx.notes.push("pixel-data: none to change");
    return;
  }
  const e = ctx.elements[at]!;
  if (e.undefinedLength) {
    const how = rng.pick(["unterminated", "cut-fragment", "garbage-fragment", "empty"] as const);
    if (how === "unterminated") e.value = e.value.subarray(0, e.value.length - 8);
    else if (how === "cut-fragment")
      e.value = e.value.subarray(0, rng.range(8, e.value.length - 9));
    else if (how === "garbage-fragment") {
      const body = e.value.subarray(0, e.value.length - 8);
      e.value = Buffer.concat([body, item(rng.bytes(2 * rng.range(1, 512))), SEQUENCE_DELIMITER]);
    } else e.value = Buffer.alloc(0);
    ctx.notes.push(`encapsulated pixel data: ${how}`);
    return;
  }
  const how = rng.pick(["half", "longer", "odd", "empty", "removed", "large"] as const);
  if (how === "half") e.value = e.value.subarray(0, e.value.length >> 1);
  else if (how === "longer") e.value = Buffer.concat([e.value, rng.bytes(2 * rng.range(1, 256))]);
  else if (how === "odd") e.value = Buffer.concat([e.value, rng.bytes(1)]);
  else if (how === "empty") e.value = Buffer.alloc(0);
  else if (how === "removed") ctx.elements.splice(at, 1);
  else e.value = rng.bytes(65536);
  ctx.notes.push(`native pixel data: ${how}`);
};

const WRONG_VRS = ["OB", "OW", "UN", "SQ", "US", "UL", "UI", "LO", "FD", "AT", "ZZ", "\0\0", "ob"];

const wrongVr: Structural = (ctx) => {
  const e = pickElement(ctx, INTERESTING_TAGS);
  if (!e) return;
  const vrs = WRONG_VRS.filter((v) => v !== e.vr);
  const vr = ctx.rng.pick(vrs);
  ctx.notes.push(`wrong VR: ${tagName(e.tag)} ${e.vr} -> ${JSON.stringify(vr)}`);
  e.vr = vr;
};

const duplicateTag: Structural = (ctx) => {
  const { rng } = ctx;
  const e = pickElement(ctx, INTERESTING_TAGS);
  if (!e) return;
  const copy: Element = { ...e };
  const uidTag = Object.values(UID_TAGS).includes(e.tag as never);
  if (uidTag && rng.chance(0.5)) copy.value = textElement(e.tag, "UI", rng.uid()).value;
  const adjacent = rng.chance(0.5);
  const at = adjacent ? ctx.elements.indexOf(e) + 1 : rng.int(ctx.elements.length + 1);
  ctx.elements.splice(at, 0, copy);
  const differs = copy.value !== e.value ? " (other value)" : "";
  ctx.notes.push(
    `duplicate tag: ${tagName(e.tag)}${differs} ${adjacent ? "adjacent" : `at ${at}`}`,
  );
};

const openSequence: Structural = (ctx) => {
  const { rng } = ctx;
  const inner = encodeElement(textElement(0x00081150, "UI", SOP_CLASSES.computedRadiography));
  const how = rng.pick([
    "item-open",
    "no-delimiters",
    "no-sequence-delimiter",
    "empty-open",
  ] as const);
  let value: Buffer;
  if (how === "item-open") value = Buffer.concat([UNDEFINED_ITEM, inner]);
  else if (how === "no-delimiters") value = Buffer.concat([UNDEFINED_ITEM, inner, ITEM_DELIMITER]);
  else if (how === "no-sequence-delimiter") value = item(inner);
  else value = Buffer.alloc(0);
  const e: Element = { tag: 0x00081140, vr: "SQ", value, undefinedLength: true };
  const atEnd = rng.chance(0.3);
  if (atEnd) ctx.elements.push(e);
  else insertInOrder(ctx.elements, e);
  ctx.notes.push(`open sequence (0008,1140): ${how}${atEnd ? ", at the end" : ""}`);
};

const lengthField: Structural = (ctx) => {
  const { rng } = ctx;
  const e = pickElement(ctx, INTERESTING_TAGS);
  if (!e) return;
  const n = e.value.length;
  const length = rng.pick([
    0,
    1,
    n + 1,
    Math.max(0, n - 1),
    n + 2,
    0xfffe,
    0xffff,
    0xffffffff,
    0x7fffffff,
    rng.u32(),
  ]);
  e.length = length;
  ctx.notes.push(`length field: ${tagName(e.tag)} ${e.vr} length ${n} written as ${length}`);
};

const removeAttribute: Structural = (ctx) => {
  const tag = ctx.rng.pick([
    TAG.sopClassUid,
    TAG.sopInstanceUid,
    TAG.studyInstanceUid,
    TAG.seriesInstanceUid,
    TAG.rows,
    TAG.bitsAllocated,
    TAG.pixelData,
  ]);
  const before = ctx.elements.length;
  ctx.elements = ctx.elements.filter((e) => e.tag !== tag);
  ctx.notes.push(`removed ${tagName(tag)}${before === ctx.elements.length ? " (absent)" : ""}`);
};

const commandMismatch: Structural = (ctx) => {
  const { rng } = ctx;
  ctx.flags.add("command-mismatch");
  if (rng.chance(0.5)) {
    ctx.command.sopInstanceUid = rng.uid();
    ctx.notes.push(`command mismatch: Affected SOP Instance UID ${ctx.command.sopInstanceUid}`);
  } else {
    const other = ACCEPTED_CLASSES.filter((c) => c !== ctx.base.sopClassUid);
    ctx.command.sopClassUid = rng.pick(other);
    ctx.notes.push(`command mismatch: Affected SOP Class UID ${ctx.command.sopClassUid}`);
  }
};

const COMPRESSED = [
  TRANSFER_SYNTAXES.rleLossless,
  TRANSFER_SYNTAXES.jpegLosslessSv1,
  TRANSFER_SYNTAXES.jpegBaseline,
  TRANSFER_SYNTAXES.jpeg2000Lossless,
];

/** Sends the data set under a syntax of the other kind (native ↔ encapsulated). */
const transferSyntaxMismatch: Structural = (ctx) => {
  if (!isNative(ctx.base.transferSyntaxUid)) {
    ctx.ts = TRANSFER_SYNTAXES.explicitVrLittleEndian;
    ctx.notes.push(`encapsulated data set sent under explicit VR LE (${ctx.base.name})`);
    return;
  }
  ctx.ts = ctx.rng.pick(COMPRESSED);
  ctx.notes.push(`native data set sent under ${ctx.ts}`);
};

/**
 * The same, with the data set itself claiming (0002,0010) = the syntax its pixel data really has:
 * a reader that takes the data set's word over the negotiated syntax sees no mismatch.
 */
const smuggledSyntax: Structural = (ctx) => {
  let claimed: string;
  if (!isNative(ctx.base.transferSyntaxUid)) {
    claimed = ctx.base.transferSyntaxUid;
    ctx.ts = TRANSFER_SYNTAXES.explicitVrLittleEndian;
  } else {
    claimed = TRANSFER_SYNTAXES.explicitVrLittleEndian;
    ctx.ts = ctx.rng.pick(COMPRESSED);
  }
  ctx.elements.unshift(textElement(0x00020010, "UI", claimed));
  ctx.flags.add("meta-in-dataset");
  ctx.notes.push(`sent under ${ctx.ts}, data set claims (0002,0010) ${claimed}`);
};

const deepNesting: Structural = (ctx) => {
  const { rng } = ctx;
  const depth = rng.range(50, 400);
  const undefinedLengths = rng.chance(0.5);
  let body = encodeElement(textElement(0x00080100, "SH", "DEEP"));
  for (let i = 0; i < depth; i++) {
    const value = undefinedLengths
      ? Buffer.concat([UNDEFINED_ITEM, body, ITEM_DELIMITER, SEQUENCE_DELIMITER])
      : item(body);
    body = encodeElement({ tag: 0x0040a730, vr: "SQ", value, undefinedLength: undefinedLengths });
  }
  const outer = readElement(body, 0)[0];
  insertInOrder(ctx.elements, { ...outer, value: Buffer.from(outer.value) });
  ctx.notes.push(
    `nested sequences: depth ${depth}, ${undefinedLengths ? "undefined" : "defined"} lengths`,
  );
};

const privateJunk: Structural = (ctx) => {
  const { rng } = ctx;
  const group = rng.pick([0x0009, 0x0011, 0x0029, 0x7fdf]);
  const creator = textElement(((group << 16) | 0x0010) >>> 0, "LO", "FUZZ");
  const undefinedLength = rng.chance(0.4);
  const junk: Element = undefinedLength
    ? {
        tag: ((group << 16) | 0x1001) >>> 0,
        vr: "UN",
        value: Buffer.concat([item(rng.bytes(2 * rng.range(0, 512))), SEQUENCE_DELIMITER]),
        undefinedLength: true,
      }
    : { tag: ((group << 16) | 0x1001) >>> 0, vr: "OB", value: rng.bytes(2 * rng.range(0, 2048)) };
  insertInOrder(ctx.elements, creator);
  insertInOrder(ctx.elements, junk);
  ctx.notes.push(
    `private junk: group ${group.toString(16)} ${junk.vr}${undefinedLength ? " (undefined length)" : ""}`,
  );
};

const metaInDataset: Structural = (ctx) => {
  const value = ctx.rng.pick([
    TRANSFER_SYNTAXES.jpegBaseline,
    TRANSFER_SYNTAXES.explicitVrBigEndian,
    "1.2.3.x",
  ]);
  ctx.elements.unshift(textElement(0x00020010, "UI", value));
  ctx.flags.add("meta-in-dataset");
  ctx.notes.push(`(0002,0010) ${value} inside the data set`);
};

/** Where the header ends in the encoded bytes: the first Pixel Data tag (or the end). */
function headerEnd(bytes: Buffer): number {
  const at = bytes.indexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00]));
  return at > 0 ? at : bytes.length;
}

const bitFlip: ByteLevel = (ctx, bytes) => {
  const { rng } = ctx;
  const out = Buffer.from(bytes);
  const inHeader = rng.chance(0.7);
  const limit = inHeader ? headerEnd(out) : out.length;
  const flips = rng.range(1, 8);
  const at: number[] = [];
  for (let i = 0; i < flips; i++) {
    const pos = rng.int(limit);
    out[pos] = out[pos]! ^ (1 << rng.int(8));
    at.push(pos);
  }
  ctx.notes.push(`bit flips at ${at.join(", ")}${inHeader ? " (header)" : ""}`);
  return out;
};

const byteOverwrite: ByteLevel = (ctx, bytes) => {
  const { rng } = ctx;
  const out = Buffer.from(bytes);
  const runs = rng.range(1, 4);
  const notes: string[] = [];
  for (let r = 0; r < runs; r++) {
    const len = rng.range(1, 8);
    const pos = rng.int(Math.max(1, (rng.chance(0.7) ? headerEnd(out) : out.length) - len));
    const fill = rng.pick(["random", "ff", "00"] as const);
    const bytesIn =
      fill === "random" ? rng.bytes(len) : Buffer.alloc(len, fill === "ff" ? 0xff : 0);
    bytesIn.copy(out, pos);
    notes.push(`${len}×${fill}@${pos}`);
  }
  ctx.notes.push(`overwrite ${notes.join(", ")}`);
  return out;
};

const truncate: ByteLevel = (ctx, bytes) => {
  const { rng } = ctx;
  const limit = rng.chance(0.5) ? headerEnd(bytes) : bytes.length;
  const cut = Math.max(1, rng.int(Math.max(1, limit)));
  ctx.notes.push(`truncated to ${cut} of ${bytes.length} bytes`);
  return bytes.subarray(0, cut);
};

const STRUCTURAL: [string, number, Structural][] = [
  ["hostile-uid", 14, hostileUid],
  ["rows-columns", 5, rowsColumns],
  ["bits-allocated", 5, bitsAllocated],
  ["pixel-data-length", 7, pixelDataLength],
  ["wrong-vr", 6, wrongVr],
  ["duplicate-tag", 6, duplicateTag],
  ["open-sequence", 5, openSequence],
  ["length-field", 8, lengthField],
  ["remove-attribute", 4, removeAttribute],
  ["command-mismatch", 5, commandMismatch],
  ["transfer-syntax-mismatch", 5, transferSyntaxMismatch],
  ["smuggled-syntax", 3, smuggledSyntax],
  ["deep-nesting", 3, deepNesting],
  ["private-junk", 3, privateJunk],
  ["meta-in-dataset", 3, metaInDataset],
];
const BYTE_LEVEL: [string, number, ByteLevel][] = [
  ["bit-flip", 10, bitFlip],
  ["byte-overwrite", 6, byteOverwrite],
  ["truncate", 6, truncate],
];
const ALL = [
  ...STRUCTURAL.map(([k, w]) => [k, w] as const),
  ...BYTE_LEVEL.map(([k, w]) => [k, w] as const),
];
const TOTAL_WEIGHT = ALL.reduce((s, [, w]) => s + w, 0);

export const MUTATION_KINDS: readonly string[] = ["control", ...ALL.map(([k]) => k)];

function pickKind(rng: Rng): string {
  let r = rng.int(TOTAL_WEIGHT);
  for (const [kind, weight] of ALL) {
    if (r < weight) return kind;
    r -= weight;
  }
  return ALL[0]![0];
}

/** Share of objects sent unmutated (they must all be stored). */
const CONTROL_SHARE = 0.06;

/** Object `index` of the run seeded `seed`: the same bytes every time. */
export function generateObject(
  seed: number,
  index: number,
  bases: Base[],
  pools: UidPools,
): FuzzObject {
  const rng = new Rng(objectSeed(seed, index));
  const base = rng.pick(bases);
  const study = rng.pick(pools.studies);
  const uids = { study: study.study, series: rng.pick(study.series), sop: rng.uid() };
  const ctx: Ctx = {
    rng,
    index,
    base,
    elements: base.elements.map((e) => ({ ...e })),
    ts: base.transferSyntaxUid,
    command: { sopClassUid: base.sopClassUid, sopInstanceUid: uids.sop },
    uids,
    notes: [],
    flags: new Set(),
  };
  setElement(ctx.elements, textElement(TAG.studyInstanceUid, "UI", uids.study));
  setElement(ctx.elements, textElement(TAG.seriesInstanceUid, "UI", uids.series));
  setElement(ctx.elements, textElement(TAG.sopInstanceUid, "UI", uids.sop));
  const kinds: string[] = [];
  if (rng.chance(CONTROL_SHARE)) {
    kinds.push("control");
    ctx.flags.add("control");
  } else {
    const n = rng.range(1, 3);
    for (let i = 0; i < n; i++) kinds.push(pickKind(rng));
  }
  // Structural mutations first (in the order drawn), then the byte-level ones on the encoding.
  for (const kind of kinds) STRUCTURAL.find(([k]) => k === kind)?.[2](ctx);
  let bytes = encodeDataset(ctx.elements);
  for (const kind of kinds) {
    const m = BYTE_LEVEL.find(([k]) => k === kind)?.[2];
    if (m) {
      bytes = m(ctx, bytes);
      ctx.flags.add("byte-level");
    }
  }
  // What the object ends up as, after every mutation (a later one may undo an earlier one).
  const pixels = ctx.elements.filter((e) => e.tag === TAG.pixelData);
  const baseNative = isNative(base.transferSyntaxUid);
  if (!baseNative && isNative(ctx.ts) && !ctx.flags.has("byte-level")) {
    const encapsulated =
      pixels.length === 1 && pixels[0]!.vr === "OB" && pixels[0]!.undefinedLength;
    if (encapsulated && pixels[0]!.length === undefined) ctx.flags.add("encapsulated-under-native");
  }
  if (baseNative && !isNative(ctx.ts)) ctx.flags.add("native-under-compressed");
  return {
    index,
    base: base.name,
    transferSyntaxUid: ctx.ts,
    command: ctx.command,
    uids: ctx.uids,
    dataset: bytes,
    kinds,
    mutations: ctx.notes,
    flags: [...ctx.flags],
  };
}

// ---------------------------------------------------------------------------------------------
// Sending

const { Client, Dataset } = dimse;
const { CStoreRequest } = dimse.requests;

/**
 * A data set that is already encoded: dcmjs-dimse asks a data set for its bytes
 * (`getDenaturalizedDataset`) when it builds the P-DATA-TF PDUs, and gets these, unparsed. Its
 * transfer syntax must be the accepted one of the presentation context (else dcmjs-dimse would try
 * to transcode it), which holds for the contexts the listener negotiates.
 */
class RawDataset extends Dataset {
  constructor(
    private readonly bytes: Buffer,
    transferSyntaxUid: string,
  ) {
    super({}, transferSyntaxUid);
  }
  override getDenaturalizedDataset(): Buffer {
    return this.bytes;
  }
}

export interface SendOutcome {
  index: number;
  /** The DIMSE status of the C-STORE response; null: none came. */
  status: number | null;
  /** The response's Error Comment (0000,0902), when it has one. */
  errorComment?: string;
  error?: string;
  /** From the previous response (or the association's acceptance) to this one. */
  latencyMs: number;
}

export interface Peer {
  port: number;
  calledAet: string;
  callingAet: string;
}

interface AssociationResult {
  accepted: boolean;
  /** How many of the objects handed in were sent (answered or not). */
  consumed: number;
  error?: string;
}

function associate(
  peer: Peer,
  objects: FuzzObject[],
  timeoutMs: number,
  onOutcome: (o: SendOutcome) => void,
): Promise<AssociationResult> {
  return new Promise((resolve) => {
    dimse.log.setLevel("silent");
    const client = new Client();
    let next = 0;
    let accepted = false;
    let settled = false;
    let error: string | undefined;
    let last = Date.now();
    objects.forEach((o, k) => {
      const request = new CStoreRequest(new RawDataset(o.dataset, o.transferSyntaxUid));
      request.setAffectedSopClassUid(o.command.sopClassUid);
      request.setAffectedSopInstanceUid(o.command.sopInstanceUid);
      request.on("response", (response: dimse.responses.Response) => {
        if (settled) return;
        const now = Date.now();
        // dcmjs-dimse skips a request it has no accepted presentation context for, silently.
        for (let j = next; j < k; j++) {
          onOutcome({
            index: objects[j]!.index,
            status: null,
            error: "skipped by the client: no accepted presentation context",
            latencyMs: 0,
          });
        }
        // Only a failure's comment is its own: dcmjs-dimse's client appends each response command
        // to the previous one when that had no data set, so a success inherits the last comment.
        const status = response.getStatus();
        const comment = status !== 0 ? response.getErrorComment() : undefined;
        onOutcome({
          index: o.index,
          status,
          ...(comment ? { errorComment: String(comment) } : {}),
          latencyMs: now - last,
        });
        last = now;
        next = k + 1;
      });
      client.addRequest(request);
    });
    const finish = (why: string) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      let consumed = next;
      // Requests go one at a time: once accepted, the first unanswered one was on the wire.
      if (accepted && next < objects.length) {
        onOutcome({
          index: objects[next]!.index,
          status: null,
          error: why,
          latencyMs: Date.now() - last,
        });
        consumed = next + 1;
      }
      resolve({ accepted, consumed, error: why });
    };
    const watchdog = setInterval(() => {
      if (Date.now() - last <= timeoutMs) return;
      try {
        client.abort();
      } catch {
        // not connected yet
      }
      finish(`no response within ${timeoutMs} ms`);
    }, 200);
    client.on("associationAccepted", () => {
      accepted = true;
      last = Date.now();
    });
    client.on("associationRejected", (r: { result: number; source: number; reason: number }) => {
      error = `association rejected (${r.result}/${r.source}/${r.reason})`;
    });
    client.on("networkError", (e: Error) => {
      error ??= `network error: ${e.message}`;
    });
    client.on("closed", () => finish(error ?? "association closed before the response"));
    client.send("127.0.0.1", peer.port, peer.callingAet, peer.calledAet, {
      connectTimeout: timeoutMs,
      associationTimeout: timeoutMs,
      pduTimeout: timeoutMs,
    });
  });
}

/**
 * Sends the objects in one association, one C-STORE at a time; when the association ends early
 * (the peer aborts or closes it, or an answer does not come within `timeoutMs`) the object in
 * flight gets no status and the rest go in a new association. Returns how many were opened.
 */
export async function sendObjects(
  peer: Peer,
  objects: FuzzObject[],
  timeoutMs: number,
  onOutcome: (o: SendOutcome) => void,
): Promise<{ associations: number; endedEarly: string[] }> {
  let rest = objects;
  let associations = 0;
  let refusedInARow = 0;
  const endedEarly: string[] = [];
  while (rest.length > 0) {
    const r = await associate(peer, rest, timeoutMs, onOutcome);
    associations += 1;
    if (r.consumed < rest.length || !r.accepted) endedEarly.push(r.error ?? "unknown");
    if (!r.accepted) {
      refusedInARow += 1;
      if (refusedInARow >= 3) {
        for (const o of rest) {
          onOutcome({
            index: o.index,
            status: null,
            error: r.error ?? "no association",
            latencyMs: 0,
          });
        }
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      continue;
    }
    refusedInARow = 0;
    rest = rest.slice(r.consumed);
  }
  return { associations, endedEarly };
}
