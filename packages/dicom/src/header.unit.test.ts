/**
 * The File Meta boundary and the reasons given for files that do not parse, on small
 * Part 10 files built byte by byte here.
 */
import { describe, expect, it } from "vitest";
import { fileMetaProblem, unreadableReason } from "./diagnose.ts";
import { DicomParseError, readRadiographHeader, structureProblem } from "./header.ts";

const LONG = new Set(["OB", "OW", "SQ", "UN", "UT"]);

/** One element, explicit VR little endian (implicit when `explicit` is false); odd values stay odd. */
function el(tag: number, vr: string, value: string | Buffer, explicit = true): Buffer {
  const bytes = typeof value === "string" ? Buffer.from(value, "latin1") : value;
  const head = Buffer.alloc(explicit && LONG.has(vr) ? 12 : 8);
  head.writeUInt16LE(tag >>> 16, 0);
  head.writeUInt16LE(tag & 0xffff, 2);
  if (!explicit) head.writeUInt32LE(bytes.length, 4);
  else {
    head.write(vr, 4, "latin1");
    if (head.length === 12) head.writeUInt32LE(bytes.length, 8);
    else head.writeUInt16LE(bytes.length, 6);
  }
  return Buffer.concat([head, bytes]);
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
};

const SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1";
const EXPLICIT_LE = "1.2.840.10008.1.2.1";

/** Preamble, "DICM", (0002,0000) unless left out, the given meta elements, the data set. */
function part10(meta: Buffer[], dataSet: Buffer, groupLength = true): Buffer {
  const body = Buffer.concat(meta);
  const prefix = Buffer.alloc(132);
  prefix.write("DICM", 128, "latin1");
  return Buffer.concat([
    prefix,
    groupLength ? el(0x00020000, "UL", u32(body.length)) : Buffer.alloc(0),
    body,
    dataSet,
  ]);
}

function meta(syntax = EXPLICIT_LE): Buffer[] {
  return [
    el(0x00020001, "OB", Buffer.from([0, 1])),
    el(0x00020002, "UI", `${SOP_CLASS}\0`),
    el(0x00020003, "UI", "1.2.3.4\0"),
    el(0x00020010, "UI", syntax.length % 2 ? `${syntax}\0` : syntax),
  ];
}

/** A small DX data set with 2x2 8-bit pixels. */
function dataSet(explicit = true): Buffer {
  return Buffer.concat([
    el(0x00080016, "UI", `${SOP_CLASS}\0`, explicit),
    el(0x00080018, "UI", "1.2.3.4\0", explicit),
    el(0x00080060, "CS", "DX", explicit),
    el(0x0020000d, "UI", "1.2.3.5\0", explicit),
    el(0x0020000e, "UI", "1.2.3.6\0", explicit),
    el(0x00280010, "US", Buffer.from([2, 0]), explicit),
    el(0x00280011, "US", Buffer.from([2, 0]), explicit),
    el(0x7fe00010, "OB", Buffer.from([1, 2, 3, 4]), explicit),
  ]);
}

function refusal(file: Buffer): string {
  try {
    readRadiographHeader(file, true);
  } catch (error) {
    if (error instanceof DicomParseError) return error.message;
    throw error;
  }
  return "accepted";
}

describe("the File Meta boundary", () => {
  it("reads a file whose File Meta ends with empty elements (GDCM, some DCMTK versions)", () => {
    // The last element's value starts where the group ends: it is still File Meta.
    const file = part10([...meta(), el(0x00020013, "SH", ""), el(0x00020016, "AE", "")], dataSet());
    expect(refusal(file)).toBe("accepted");
    expect(readRadiographHeader(file, true).transferSyntaxUid).toBe(EXPLICIT_LE);
    expect(structureProblem(file)).toBeUndefined();
  });

  it("reads a file without (0002,0000)", () => {
    expect(refusal(part10(meta(), dataSet(), false))).toBe("accepted");
  });

  it("refuses a group 0002 element after the group, empty or not", () => {
    const claim = el(0x00020010, "UI", "1.2.840.10008.1.2.4.50\0");
    expect(refusal(part10(meta(), Buffer.concat([claim, dataSet()])))).toBe(
      "File Meta Information element (0002,0010) inside the data set",
    );
    const empty = el(0x00020016, "AE", "");
    expect(refusal(part10(meta(), Buffer.concat([empty, dataSet()])))).toBe(
      "File Meta Information element (0002,0016) inside the data set",
    );
  });
});

describe("why a file does not parse", () => {
  it("says a bare data set is not a Part 10 file", () => {
    expect(refusal(dataSet())).toMatch(/^not a DICOM Part 10 file: no File Meta Information/);
    expect(refusal(Buffer.alloc(0))).toMatch(/^not a DICOM Part 10 file/);
  });

  it("names a missing Transfer Syntax UID", () => {
    const file = part10(meta().slice(0, 3), dataSet());
    expect(refusal(file)).toBe("File Meta Information lacks Transfer Syntax UID (0002,0010)");
  });

  it("names the element a truncated file ends in", () => {
    const file = part10(meta(), dataSet());
    const at = file.indexOf(Buffer.from("DX"));
    expect(refusal(file.subarray(0, at + 1))).toMatch(
      /^the file is truncated: element \(0008,0060\) at byte \d+ declares 2 bytes, 1 remain$/,
    );
  });

  it("says a data set is implicit VR when its transfer syntax says explicit", () => {
    const file = part10(meta(), dataSet(false));
    expect(refusal(file)).toMatch(
      /^element \(0008,0016\) at byte 2\d\d has no VR \(bytes 1C 00\) although the transfer syntax Explicit VR Little Endian \(1\.2\.840\.10008\.1\.2\.1\) is explicit VR: the data set is encoded implicit VR$/,
    );
  });

  it("names group 0001 at the start of the data set (dicom-parser reads it as File Meta)", () => {
    const file = part10(
      meta("1.2.840.10008.1.2"),
      Buffer.concat([el(0x00010001, "", "odd", false), dataSet(false)]),
    );
    expect(refusal(file)).toBe(
      "the data set starts with element (0001,0001): group 0001 may not appear in a data set (PS3.5 7.8.1)",
    );
  });

  it("names a sequence that is never closed, and stray bytes after the last element", () => {
    const undefinedLength = u32(0xffffffff);
    const open = Buffer.concat([
      Buffer.from([0x09, 0x00, 0x10, 0x10, 0x53, 0x51, 0, 0]), // (0009,1010) SQ
      undefinedLength,
      Buffer.from([0xfe, 0xff, 0x00, 0xe0]), // an item, never closed
      undefinedLength,
      el(0x00091011, "LO", "x "),
    ]);
    const unclosed = part10(meta(), Buffer.concat([dataSet(), open]));
    expect(unreadableReason(unclosed)).toMatch(
      /^the file is truncated: item 1 of the sequence element \(0009,1010\) at byte \d+ is never closed \(no Item Delimitation Item\)$/,
    );
    const stray = part10(meta(), Buffer.concat([dataSet(), Buffer.from([1, 2, 3])]));
    expect(structureProblem(stray)).toMatch(
      /^3 stray byte\(s\) after the last element, at byte \d+/,
    );
  });

  it("tolerates zero bytes after the last element, not other bytes", () => {
    const zeros = part10(meta(), Buffer.concat([dataSet(), Buffer.alloc(16)]));
    expect(structureProblem(zeros)).toBeUndefined();
    // Eight zeros where an element belongs are no padding, whatever ends the data set.
    const ds = dataSet();
    const inside = Buffer.concat([ds.subarray(0, 8 + 28), Buffer.alloc(8), ds.subarray(8 + 28)]);
    expect(structureProblem(part10(meta(), inside))).toMatch(
      /^element \(0000,0000\) has unknown VR/,
    );
    const junk = Buffer.concat([el(0x00000000, "\0\0", "xy"), Buffer.alloc(8)]);
    expect(structureProblem(part10(meta(), Buffer.concat([dataSet(), junk])))).toMatch(
      /^element \(0000,0000\) has unknown VR/,
    );
  });

  it("walks File Meta without (0002,0000) to where group 0002 ends", () => {
    const file = part10(meta(), dataSet(), false);
    expect(fileMetaProblem(file)).toEqual({
      transferSyntaxUid: EXPLICIT_LE,
      dataSetStart: file.length - dataSet().length,
    });
  });
});

describe("text in the data set's character set", () => {
  it("decodes the accession number and descriptions as UTF-8 under ISO_IR 192, as Latin-1 under ISO_IR 100", () => {
    const withText = (charset: string, encoding: BufferEncoding) => {
      const text = (s: string) => {
        const b = Buffer.from(s, encoding);
        return b.length % 2 ? Buffer.concat([b, Buffer.from(" ")]) : b;
      };
      const base = dataSet();
      // (0008,0005), (0008,0050) and (0008,1030) sort before (0008,0016) .. after: insert in order.
      const sop = base.indexOf(Buffer.from([0x08, 0x00, 0x16, 0x00]));
      const elements = Buffer.concat([
        el(0x00080005, "CS", charset.length % 2 ? `${charset} ` : charset),
        base.subarray(sop, base.indexOf(Buffer.from([0x08, 0x00, 0x60, 0x00]))),
        el(0x00080050, "SH", text("ÄÖ-1234")),
        base.subarray(
          base.indexOf(Buffer.from([0x08, 0x00, 0x60, 0x00])),
          base.indexOf(Buffer.from([0x20, 0x00, 0x0d, 0x00])),
        ),
        el(0x00081030, "LO", text("Knie – beidseits")),
        base.subarray(base.indexOf(Buffer.from([0x20, 0x00, 0x0d, 0x00]))),
      ]);
      return readRadiographHeader(part10(meta(), elements), true);
    };
    const utf8 = withText("ISO_IR 192", "utf8");
    expect(utf8.accessionNumber).toBe("ÄÖ-1234");
    expect(utf8.studyDescription).toBe("Knie – beidseits");
    const latin1 = withText("ISO_IR 100", "latin1");
    expect(latin1.accessionNumber).toBe("ÄÖ-1234");
  });
});
