/**
 * Decoding of text values in a data set's Specific Character Set (0008,0005), so that a name reads
 * the same wherever kneegrade reads it (ingest, reports: always UTF-8, ISO_IR 192).
 */

/** Single-byte and multi-byte character sets (PS3.3 C.12.1.1.2) → WHATWG TextDecoder labels. */
const DECODERS: Record<string, string> = {
  "ISO_IR 100": "latin1",
  "ISO_IR 101": "iso-8859-2",
  "ISO_IR 109": "iso-8859-3",
  "ISO_IR 110": "iso-8859-4",
  "ISO_IR 144": "iso-8859-5",
  "ISO_IR 127": "iso-8859-6",
  "ISO_IR 126": "iso-8859-7",
  "ISO_IR 138": "iso-8859-8",
  "ISO_IR 148": "iso-8859-9",
  "ISO_IR 203": "iso-8859-15",
  "ISO_IR 13": "shift_jis",
  "ISO_IR 166": "windows-874",
  "ISO_IR 192": "utf-8",
  GB18030: "gb18030",
  GBK: "gbk",
  "ISO 2022 IR 100": "latin1",
  "ISO 2022 IR 101": "iso-8859-2",
  "ISO 2022 IR 109": "iso-8859-3",
  "ISO 2022 IR 110": "iso-8859-4",
  "ISO 2022 IR 144": "iso-8859-5",
  "ISO 2022 IR 127": "iso-8859-6",
  "ISO 2022 IR 126": "iso-8859-7",
  "ISO 2022 IR 138": "iso-8859-8",
  "ISO 2022 IR 148": "iso-8859-9",
  "ISO 2022 IR 203": "iso-8859-15",
  "ISO 2022 IR 166": "windows-874",
  "ISO 2022 IR 13": "shift_jis",
  // JIS X 0208 / 0212 with escape sequences: the iso-2022-jp decoder follows them.
  "ISO 2022 IR 87": "iso-2022-jp",
  "ISO 2022 IR 159": "iso-2022-jp",
  // KS X 1001 and GB 2312 are written in their EUC form after an escape sequence: strip it.
  "ISO 2022 IR 149": "euc-kr",
  "ISO 2022 IR 58": "gbk",
};

/**
 * Drops ISO 2022 escape sequences (ESC, intermediate bytes 0x20-0x2F, a final byte 0x30-0x7E),
 * keeping the EUC bytes of KS X 1001 / GB 2312 text.
 */
function withoutEscapeSequences(bytes: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== 0x1b) {
      out.push(bytes[i]!);
      continue;
    }
    while (i + 1 < bytes.length && bytes[i + 1]! >= 0x20 && bytes[i + 1]! <= 0x2f) i++;
    if (i + 1 < bytes.length && bytes[i + 1]! >= 0x30 && bytes[i + 1]! <= 0x7e) i++;
  }
  return Uint8Array.from(out);
}

/** Returns a decoder for the data set's Specific Character Set (0008,0005). */
export function textDecoder(charset: string | undefined): (bytes: Uint8Array) => string {
  const terms = (charset ?? "").split("\\").map((t) => t.trim());
  // With code extensions the first term is the default (G0) set; decode with the extended one.
  const term = terms.find((t, i) => t !== "" && (i > 0 || terms.length === 1)) ?? terms[0] ?? "";
  const label = DECODERS[term];
  if (label === undefined || label === "latin1") {
    // Default repertoire (ASCII) or Latin-1; an unknown set also falls back to Latin-1 bytes.
    return (bytes) => Buffer.from(bytes).toString("latin1");
  }
  const decoder = new TextDecoder(label);
  if (label === "euc-kr" || label === "gbk") {
    return (bytes) => decoder.decode(withoutEscapeSequences(bytes));
  }
  return (bytes) => decoder.decode(bytes);
}
