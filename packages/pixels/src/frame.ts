/** Frame 0 of Pixel Data (7FE0,0010): native bytes -> stored values, or the compressed bytes. */
import dicomParser from "dicom-parser";
import { PixelDataError } from "./errors.ts";
import { maskWords } from "./samples.mjs";

export interface PixelModule {
  rows: number;
  columns: number;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  pixelRepresentation: 0 | 1;
}

/** The range of stored values that bitsStored and pixelRepresentation allow. */
export function storedRange(m: PixelModule): { min: number; max: number } {
  return m.pixelRepresentation === 1
    ? { min: -(2 ** (m.bitsStored - 1)), max: 2 ** (m.bitsStored - 1) - 1 }
    : { min: 0, max: 2 ** m.bitsStored - 1 };
}

/**
 * Keeps the bitsStored bits that end at highBit and sign-extends them when pixelRepresentation is 1
 * (PS3.5 8.1.1): bits outside the stored range (overlays, garbage) never reach the stored value.
 */
function masker(m: PixelModule, shift: number): (raw: number) => number {
  const bs = m.bitsStored;
  const signBit = 2 ** (bs - 1);
  const modulus = 2 ** bs;
  if (bs === 32) return m.pixelRepresentation === 1 ? (raw) => raw | 0 : (raw) => raw >>> 0;
  const mask = modulus - 1; // < 2^31 here, so bitwise & is safe
  if (m.pixelRepresentation === 1) {
    return (raw) => {
      const v = (raw >>> shift) & mask;
      return v >= signBit ? v - modulus : v;
    };
  }
  return (raw) => (raw >>> shift) & mask;
}

/**
 * Stored values of frame 0 of native (uncompressed) pixel data.
 * `bytes` starts at frame 0; `littleEndian` is the transfer syntax's byte order, and `vr` tells
 * whether 8-bit data in big endian was written as OW (swapped in 16-bit words) or OB.
 */
export function nativeStored(
  bytes: Uint8Array,
  m: PixelModule,
  littleEndian: boolean,
  vr: string | undefined,
): Int32Array {
  const n = m.rows * m.columns;
  const out = new Int32Array(n);
  const hb =
    m.highBit >= m.bitsStored - 1 && m.highBit < m.bitsAllocated ? m.highBit : m.bitsStored - 1;
  const fix = masker(m, hb + 1 - m.bitsStored);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (m.bitsAllocated === 8) {
    const swapped = !littleEndian && vr === "OW";
    for (let i = 0; i < n; i++) out[i] = fix(bytes[swapped ? i ^ 1 : i] ?? 0);
  } else if (m.bitsAllocated === 16) {
    if (littleEndian && bytes.byteOffset % 2 === 0) {
      const words = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
      if (m.pixelRepresentation === 0 && m.bitsStored < 32) {
        // The common case, as one tight loop: the same bits as `fix`, without a call per pixel.
        maskWords(words, out, hb + 1 - m.bitsStored, 2 ** m.bitsStored - 1);
      } else {
        for (let i = 0; i < n; i++) out[i] = fix(words[i]!);
      }
    } else {
      for (let i = 0; i < n; i++) out[i] = fix(dv.getUint16(2 * i, littleEndian));
    }
  } else {
    for (let i = 0; i < n; i++) out[i] = fix(dv.getUint32(4 * i, littleEndian));
  }
  return out;
}

type Element = dicomParser.Element;

/** Bytes of the fragments [start, start + count) as one array (a copy when there are several). */
function fragmentsBytes(
  ds: dicomParser.DataSet,
  el: Element,
  start: number,
  count: number,
): Uint8Array {
  return dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, start, count);
}

const START_MARKERS: Record<string, number[]> = {
  jpeg: [0xff, 0xd8], // SOI (JPEG and JPEG-LS)
  jpegls: [0xff, 0xd8],
  jpeg2000: [0xff, 0x4f], // SOC of a J2K codestream
};

/**
 * The compressed bytes of frame 0 (PS3.5 A.4). One frame: all fragments. Several frames: the
 * Basic Offset Table when there is one, else one fragment per frame when the counts match, else
 * the fragments up to the next one that starts a new codestream.
 */
export function encapsulatedFrame0(
  ds: dicomParser.DataSet,
  el: Element,
  numberOfFrames: number,
  codec: string,
): Uint8Array {
  const fragments = el.fragments ?? [];
  if (fragments.length === 0) {
    throw new PixelDataError(
      "CORRUPT_PIXEL_DATA",
      "encapsulated Pixel Data (7FE0,0010) holds no fragments",
    );
  }
  if (numberOfFrames <= 1) return fragmentsBytes(ds, el, 0, fragments.length);
  const bot = el.basicOffsetTable ?? [];
  if (bot.length >= 2) {
    const end = bot[1]!;
    const count = fragments.filter((f) => f.offset >= bot[0]! && f.offset < end).length;
    const start = fragments.findIndex((f) => f.offset === bot[0]);
    if (start >= 0 && count > 0) return fragmentsBytes(ds, el, start, count);
  }
  if (fragments.length === numberOfFrames || codec === "rle") {
    return fragmentsBytes(ds, el, 0, 1);
  }
  const marker = START_MARKERS[codec];
  let count = 1;
  if (marker) {
    while (count < fragments.length) {
      const f = fragments[count]!;
      const at = ds.byteArray;
      if (at[f.position] === marker[0] && at[f.position + 1] === marker[1]) break;
      count++;
    }
  }
  return fragmentsBytes(ds, el, 0, count);
}
