/** The transfer syntaxes the listener accepts, and how each one's pixel data is decoded. */

/** Which decoder a transfer syntax needs. */
export type PixelEncoding =
  | { kind: "native"; littleEndian: boolean; deflated: boolean }
  | { kind: "encapsulated"; codec: "jpeg" | "jpegls" | "jpeg2000" | "rle"; lossy: boolean };

interface SyntaxInfo {
  name: string;
  encoding: PixelEncoding;
}

const native = (littleEndian: boolean, deflated = false): PixelEncoding => ({
  kind: "native",
  littleEndian,
  deflated,
});
const encapsulated = (
  codec: "jpeg" | "jpegls" | "jpeg2000" | "rle",
  lossy: boolean,
): PixelEncoding => ({ kind: "encapsulated", codec, lossy });

const SYNTAXES: ReadonlyMap<string, SyntaxInfo> = new Map([
  ["1.2.840.10008.1.2", { name: "Implicit VR Little Endian", encoding: native(true) }],
  ["1.2.840.10008.1.2.1", { name: "Explicit VR Little Endian", encoding: native(true) }],
  [
    "1.2.840.10008.1.2.1.99",
    { name: "Deflated Explicit VR Little Endian", encoding: native(true, true) },
  ],
  ["1.2.840.10008.1.2.2", { name: "Explicit VR Big Endian", encoding: native(false) }],
  [
    "1.2.840.10008.1.2.4.50",
    { name: "JPEG Baseline (Process 1)", encoding: encapsulated("jpeg", true) },
  ],
  [
    "1.2.840.10008.1.2.4.51",
    { name: "JPEG Extended (Process 2 & 4)", encoding: encapsulated("jpeg", true) },
  ],
  [
    "1.2.840.10008.1.2.4.57",
    { name: "JPEG Lossless, Non-Hierarchical (Process 14)", encoding: encapsulated("jpeg", false) },
  ],
  [
    "1.2.840.10008.1.2.4.70",
    {
      name: "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
      encoding: encapsulated("jpeg", false),
    },
  ],
  [
    "1.2.840.10008.1.2.4.80",
    { name: "JPEG-LS Lossless Image Compression", encoding: encapsulated("jpegls", false) },
  ],
  [
    "1.2.840.10008.1.2.4.81",
    {
      name: "JPEG-LS Lossy (Near-Lossless) Image Compression",
      encoding: encapsulated("jpegls", true),
    },
  ],
  [
    "1.2.840.10008.1.2.4.90",
    {
      name: "JPEG 2000 Image Compression (Lossless Only)",
      encoding: encapsulated("jpeg2000", false),
    },
  ],
  [
    "1.2.840.10008.1.2.4.91",
    { name: "JPEG 2000 Image Compression", encoding: encapsulated("jpeg2000", true) },
  ],
  ["1.2.840.10008.1.2.5", { name: "RLE Lossless", encoding: encapsulated("rle", false) }],
]);

/** UID -> name of every transfer syntax readRadiograph decodes. */
export const SUPPORTED_TRANSFER_SYNTAXES: ReadonlyMap<string, string> = new Map(
  [...SYNTAXES].map(([uid, info]) => [uid, info.name]),
);

/** Names of a few syntaxes we refuse, so that the error can say what the file was. */
const KNOWN_UNSUPPORTED: Record<string, string> = {
  "1.2.840.10008.1.2.4.100": "MPEG2 Main Profile @ Main Level",
  "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264 High Profile",
  "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
  "1.2.840.10008.1.2.4.112": "JPEG XL",
  "1.2.840.10008.1.2.4.201": "High-Throughput JPEG 2000 (Lossless Only)",
  "1.2.840.10008.1.2.4.203": "High-Throughput JPEG 2000",
  "1.2.840.10008.1.2.4.91.1": "JPIP Referenced",
  "1.2.840.10008.1.2.1.98": "Encapsulated Uncompressed Explicit VR Little Endian",
};

export function transferSyntaxInfo(uid: string): SyntaxInfo | undefined {
  return SYNTAXES.get(uid);
}

/** "Name (UID)" for messages, also for syntaxes we do not support. */
export function describeTransferSyntax(uid: string): string {
  const name = SYNTAXES.get(uid)?.name ?? KNOWN_UNSUPPORTED[uid];
  return name ? `${name} (${uid})` : `unknown transfer syntax ${JSON.stringify(uid)}`;
}
