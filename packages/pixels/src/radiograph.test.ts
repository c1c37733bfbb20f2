/** Transfer syntaxes of the data set itself, and every way a file can fail, on synthetic data. */
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { PYDICOM_TEST_FILES } from "../../../tests/helpers/corpus.ts";
import { WG04_DIR } from "../../../tests/helpers/paths.ts";
import { configureCodecs } from "./codecs.ts";
import {
  PixelDataError,
  type PixelDataErrorCode,
  readRadiograph,
  SUPPORTED_TRANSFER_SYNTAXES,
} from "./index.ts";
import {
  type DataElement,
  DEFLATED,
  EXPLICIT_BE,
  EXPLICIT_LE,
  IMPLICIT_LE,
  type SyntheticImage,
  syntheticImage,
  writePart10,
} from "./synthetic.ts";

async function failure(bytes: Uint8Array): Promise<PixelDataError> {
  try {
    await readRadiograph(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(PixelDataError);
    return error as PixelDataError;
  }
  throw new Error("readRadiograph did not fail");
}

async function expectFailure(bytes: Uint8Array, code: PixelDataErrorCode, message: RegExp) {
  const error = await failure(bytes);
  expect(error.code).toBe(code);
  expect(error.message).toMatch(message);
}

const LISTENER_SYNTAXES = [
  "1.2.840.10008.1.2",
  "1.2.840.10008.1.2.1",
  "1.2.840.10008.1.2.1.99",
  "1.2.840.10008.1.2.2",
  "1.2.840.10008.1.2.4.50",
  "1.2.840.10008.1.2.4.51",
  "1.2.840.10008.1.2.4.57",
  "1.2.840.10008.1.2.4.70",
  "1.2.840.10008.1.2.4.80",
  "1.2.840.10008.1.2.4.81",
  "1.2.840.10008.1.2.4.90",
  "1.2.840.10008.1.2.4.91",
  "1.2.840.10008.1.2.5",
];

it("lists every transfer syntax the listener accepts, by name", () => {
  expect([...SUPPORTED_TRANSFER_SYNTAXES.keys()].sort()).toEqual([...LISTENER_SYNTAXES].sort());
  expect(SUPPORTED_TRANSFER_SYNTAXES.get("1.2.840.10008.1.2.5")).toBe("RLE Lossless");
});

describe("native transfer syntaxes", () => {
  // A 12-bit signed image with a VOI LUT Sequence (a sequence in implicit VR, words in big endian).
  const voiItem: DataElement[] = [
    { tag: 0x00283002, vr: "US", value: [8, 0, 16] },
    {
      tag: 0x00283006,
      vr: "OW",
      value: new Uint16Array([0, 9000, 18000, 27000, 36000, 45000, 54000, 65535]),
    },
  ];
  const image: SyntheticImage = {
    rows: 3,
    columns: 4,
    pixels: [0x0800, 0x0fff, 0x07ff, 0xa001, 0, 1, 2, 3, 4, 5, 6, 7],
    bitsStored: 12,
    pixelRepresentation: 1,
    extra: [
      { tag: 0x00280030, vr: "DS", value: "0.1\\0.1" },
      { tag: 0x00283010, vr: "SQ", value: [voiItem] },
    ],
  };

  it.each([
    ["implicit VR little endian", IMPLICIT_LE],
    ["explicit VR big endian", EXPLICIT_BE],
    ["deflated explicit VR little endian", DEFLATED],
  ])("reads %s exactly like explicit VR little endian", async (_name, syntax) => {
    const reference = await readRadiograph(writePart10(syntheticImage(image), EXPLICIT_LE));
    const r = await readRadiograph(writePart10(syntheticImage(image), syntax));
    expect(r.transferSyntaxUid).toBe(syntax);
    expect([...r.stored]).toEqual([-2048, -1, 2047, 1, 0, 1, 2, 3, 4, 5, 6, 7]);
    expect([...r.stored]).toEqual([...reference.stored]);
    expect([...r.display]).toEqual([...reference.display]);
    expect(r.voi).toEqual({ kind: "voi-lut" });
    expect(r.spacing).toEqual({ rowMm: 0.1, colMm: 0.1, source: "PixelSpacing" });
  });

  it("reads 8-bit pixels in big endian, as OB and as OW (swapped words)", async () => {
    const pixels = [1, 2, 3, 4, 5, 250];
    const ob = await readRadiograph(
      writePart10(syntheticImage({ rows: 2, columns: 3, pixels, bitsAllocated: 8 }), EXPLICIT_BE),
    );
    expect([...ob.stored]).toEqual(pixels);
    // OW in big endian: each 16-bit word (two 8-bit pixels) is byte-swapped on the wire.
    const words = new Uint16Array([1 | (2 << 8), 3 | (4 << 8), 5 | (250 << 8)]);
    const elements = syntheticImage({
      rows: 2,
      columns: 3,
      pixels,
      bitsAllocated: 8,
      pixelData: null,
    });
    elements.push({ tag: 0x7fe00010, vr: "OW", value: words });
    const ow = await readRadiograph(writePart10(elements, EXPLICIT_BE));
    expect([...ow.stored]).toEqual(pixels);
  });
});

describe("errors", () => {
  const small: SyntheticImage = {
    rows: 4,
    columns: 4,
    pixels: Array.from({ length: 16 }, (_, i) => i),
  };

  it("refuses colour images", async () => {
    await expectFailure(
      writePart10(syntheticImage({ ...small, samplesPerPixel: 3, photometric: "RGB" })),
      "UNSUPPORTED_IMAGE",
      /Samples per Pixel 3 and Photometric Interpretation RGB/,
    );
    await expectFailure(
      writePart10(syntheticImage({ ...small, photometric: "PALETTE COLOR" })),
      "UNSUPPORTED_IMAGE",
      /PALETTE COLOR/,
    );
  });

  it("refuses a Bits Stored larger than Bits Allocated", async () => {
    await expectFailure(
      writePart10(syntheticImage({ ...small, bitsStored: 17 })),
      "UNSUPPORTED_IMAGE",
      /Bits Stored 17/,
    );
  });

  it("reports Pixel Data shorter than one frame", async () => {
    await expectFailure(
      writePart10(syntheticImage({ ...small, pixelData: new Uint8Array(30) })),
      "CORRUPT_PIXEL_DATA",
      /holds 30 bytes but frame 0 of 4x4 at 16 bits allocated needs 32/,
    );
  });

  it("reports a file cut off inside Pixel Data", async () => {
    const whole = writePart10(
      syntheticImage({ ...small, rows: 64, columns: 64, pixels: new Array(4096).fill(1) }),
    );
    await expectFailure(
      whole.subarray(0, whole.length - 1000),
      "CORRUPT_PIXEL_DATA",
      /Pixel Data \(7FE0,0010\) is truncated: it declares 8192 bytes/,
    );
  });

  it("reports a data set without Pixel Data", async () => {
    await expectFailure(
      writePart10(syntheticImage({ ...small, pixelData: null })),
      "NO_PIXEL_DATA",
      /no Pixel Data \(7FE0,0010\) \(Digital X-Ray Image Storage/,
    );
  });

  it("says what a data set without pixels is when it is not an image", async () => {
    for (const [file, name] of [
      ["test-SR.dcm", "Comprehensive SR Storage"],
      ["rtplan.dcm", "RT Plan Storage"],
      ["waveform_ecg.dcm", "12-lead ECG Waveform Storage"],
    ]) {
      const bytes = new Uint8Array(readFileSync(`${PYDICOM_TEST_FILES}${file}`));
      await expectFailure(bytes, "NO_PIXEL_DATA", new RegExp(`^not an image: ${name}$`));
    }
  });

  it("names an unsupported transfer syntax", async () => {
    await expectFailure(
      writePart10(syntheticImage(small), "1.2.840.10008.1.2.4.201"),
      "UNSUPPORTED_TRANSFER_SYNTAX",
      /High-Throughput JPEG 2000 \(Lossless Only\) \(1\.2\.840\.10008\.1\.2\.4\.201\) is not supported/,
    );
    await expectFailure(
      writePart10(syntheticImage(small), "1.2.3.4.5"),
      "UNSUPPORTED_TRANSFER_SYNTAX",
      /"1\.2\.3\.4\.5"/,
    );
  });

  it("rejects bytes that are not a Part 10 file", async () => {
    await expectFailure(
      new Uint8Array(0),
      "CORRUPT_PIXEL_DATA",
      /not a readable DICOM Part 10 file/,
    );
    const noise = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff);
    await expectFailure(noise, "CORRUPT_PIXEL_DATA", /DICM prefix not found/);
  });

  it("rejects a deflated data set that does not inflate", async () => {
    const file = writePart10(syntheticImage(small), DEFLATED);
    const headerEnd = file.length - 40;
    const broken = file.slice();
    broken.fill(0xff, headerEnd - 20);
    const error = await failure(broken);
    expect(error.code).toBe("CORRUPT_PIXEL_DATA");
  });

  it("reports encapsulated Pixel Data in a native transfer syntax", async () => {
    const pixelData = { offsets: [], fragments: [new Uint8Array(32)] };
    await expectFailure(
      writePart10(syntheticImage({ ...small, pixelData })),
      "CORRUPT_PIXEL_DATA",
      /encapsulated but the transfer syntax is Explicit VR Little Endian/,
    );
  });
});

describe("corrupt compressed frames", () => {
  afterAll(() => configureCodecs({ timeoutMs: 60_000 }));

  /** RG3's compressed frame 0 from a WG04 file, as one buffer. */
  function wg04Frame(file: string): Uint8Array {
    const bytes = new Uint8Array(readFileSync(`${WG04_DIR}${file}`));
    // The fragments follow the Basic Offset Table; the stream starts at the first SOI/SOC.
    const pixelTag = Buffer.from([0xe0, 0x7f, 0x10, 0x00]);
    const at = Buffer.from(bytes).lastIndexOf(pixelTag);
    const items: Uint8Array[] = [];
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    let p = at + 12;
    p += 8 + view.getUint32(p + 4, true); // skip the offset table
    while (view.getUint16(p + 2, true) === 0xe000) {
      const length = view.getUint32(p + 4, true);
      items.push(bytes.subarray(p + 8, p + 8 + length));
      p += 8 + length;
    }
    return Buffer.concat(items);
  }

  function rg3(frame: Uint8Array, syntax: string): Uint8Array {
    return writePart10(
      syntheticImage({
        rows: 1760,
        columns: 1760,
        pixels: [],
        bitsStored: 10,
        photometric: "MONOCHROME1",
        pixelData: { offsets: [], fragments: [frame] },
      }),
      syntax,
    );
  }

  it("rebuilds a valid file from a WG04 frame (the harness works)", async () => {
    const r = await readRadiograph(rg3(wg04Frame("RG3_JLSL.dcm"), "1.2.840.10008.1.2.4.80"));
    expect(r.width).toBe(1760);
  });

  it("reports a JPEG stream cut short, which libjpeg would silently fill with grey", async () => {
    const frame = wg04Frame("RG3_JPLL.dcm");
    await expectFailure(
      rg3(frame.subarray(0, frame.length >> 1), "1.2.840.10008.1.2.4.70"),
      "CORRUPT_PIXEL_DATA",
      /does not end with an end-of-image marker.*\(JPEG Lossless/,
    );
  });

  it.each([
    ["RG3_JPLL.dcm", "1.2.840.10008.1.2.4.70", /JPEG decoder \(libjpeg\): the decoder failed/],
    [
      "RG3_JLSL.dcm",
      "1.2.840.10008.1.2.4.80",
      /JPEG-LS decoder \(CharLS\): the decoder failed: Invalid JPEG-LS stream/,
    ],
    ["RG3_RLE.dcm", "1.2.840.10008.1.2.5", /RLE decoder: the decoder failed/],
  ])("turns a decoder failure on damaged %s into CORRUPT_PIXEL_DATA", async (file, syntax, why) => {
    const frame = wg04Frame(file).slice();
    // Damage the entropy-coded data but keep the headers and the end marker.
    for (let i = 200; i < frame.length - 4; i += 97) frame[i] = ((frame[i] ?? 0) * 31 + 7) & 0xff;
    await expectFailure(rg3(frame, syntax), "CORRUPT_PIXEL_DATA", why);
    // The process and the codecs survive: the intact frame still decodes.
    const r = await readRadiograph(rg3(wg04Frame(file), syntax));
    expect(r.stored.length).toBe(1760 * 1760);
  });

  it("refuses a JPEG-LS stream whose size is not the data set's, even with as many pixels", async () => {
    const image = (rows: number, columns: number) =>
      writePart10(
        syntheticImage({
          rows,
          columns,
          pixels: [],
          bitsStored: 10,
          photometric: "MONOCHROME1",
          pixelData: { offsets: [], fragments: [wg04Frame("RG3_JLSL.dcm")] },
        }),
        "1.2.840.10008.1.2.4.80",
      );
    await expectFailure(
      image(880, 3520),
      "CORRUPT_PIXEL_DATA",
      /JPEG-LS decoder \(CharLS\): the decoder failed: the stream holds 1760x1760 pixels of 1 component\(s\); the data set declares 3520x880/,
    );
  });

  it("abandons a decode that runs past its deadline, and recovers", async () => {
    configureCodecs({ timeoutMs: 1 });
    await expectFailure(
      rg3(wg04Frame("RG3_J2KR.dcm"), "1.2.840.10008.1.2.4.90"),
      "CORRUPT_PIXEL_DATA",
      /JPEG 2000 decoder \(OpenJPEG\) did not finish within 1 ms/,
    );
    configureCodecs({ timeoutMs: 60_000 });
    const r = await readRadiograph(rg3(wg04Frame("RG3_J2KR.dcm"), "1.2.840.10008.1.2.4.90"));
    expect(r.stored.length).toBe(1760 * 1760);
  });
});

it("answers every damaged file with a Radiograph or a PixelDataError (no crash, no hang)", async () => {
  let seed = 12345;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const files = ["RG3_JPLY.dcm", "RG3_J2KI.dcm", "RG3_JLSN.dcm", "RG3_RLE.dcm"].map(
    (f) => new Uint8Array(readFileSync(`${WG04_DIR}${f}`)),
  );
  const outcomes = new Set<string>();
  for (let k = 0; k < 48; k++) {
    const source = files[k % files.length]!;
    let bytes = source.slice();
    if (k % 3 === 0) bytes = source.slice(0, Math.floor(rnd() * source.length));
    else {
      // k % 3 == 1: damage the header; 2: anywhere
      const span = k % 3 === 1 ? 2000 : bytes.length;
      for (let j = 0; j < 1 + rnd() * 50; j++) bytes[Math.floor(rnd() * span)] = rnd() * 256;
    }
    try {
      const r = await readRadiograph(bytes);
      expect(r.display.length).toBe(r.width * r.height);
      outcomes.add("ok");
    } catch (error) {
      expect(error).toBeInstanceOf(PixelDataError);
      outcomes.add((error as PixelDataError).code);
    }
  }
  expect(outcomes).toContain("CORRUPT_PIXEL_DATA");
});
