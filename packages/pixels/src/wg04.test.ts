/**
 * The NEMA WG04 radiograph RG3 (CR, 1760 x 1760, 10 bits stored, MONOCHROME1) in every encoding:
 * lossless ones must give exactly RG3_UNC's stored values, lossy ones stay within the errors
 * measured below, and every file decodes like DCMTK's / GDCM's own command-line decoders.
 * Further syntaxes are generated from RG3_UNC with DCMTK (dcmconv, dcmcjpeg, dcmcjpls, dcmcrle).
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import dicomParser from "dicom-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REFERENCE_DECODERS } from "../../../tests/helpers/dcmtk.ts";
import { WG04_DIR } from "../../../tests/helpers/paths.ts";
import { type Radiograph, readRadiograph } from "./index.ts";
import { syntheticImage, writePart10 } from "./synthetic.ts";

const run = promisify(execFile);
let dir: string;
let unc: Radiograph;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kneegrade-pixels-"));
  unc = await readRadiograph(readFileSync(`${WG04_DIR}RG3_UNC.dcm`));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs a DICOM tool on `input`, writing `name` in the temp dir; returns the output path. */
async function convert(
  cmd: string,
  args: readonly string[],
  input: string,
  name: string,
): Promise<string> {
  const out = join(dir, name);
  await run(cmd, [...args, input, out], { timeout: 120_000 });
  return out;
}

/** Raw pixel cells of every frame of an uncompressed explicit VR little endian file. */
function rawCells(path: string, bitsAllocated: 8 | 16): Uint8Array | Uint16Array {
  const bytes = readFileSync(path);
  const ds = dicomParser.parseDicom(bytes);
  const el = ds.elements.x7fe00010!;
  const copy = bytes.buffer.slice(
    bytes.byteOffset + el.dataOffset,
    bytes.byteOffset + el.dataOffset + el.length,
  );
  return bitsAllocated === 8 ? new Uint8Array(copy) : new Uint16Array(copy);
}

interface Diff {
  maxAbs: number;
  meanAbs: number;
  differing: number;
}

function diff(a: ArrayLike<number>, b: ArrayLike<number>): Diff {
  expect(a.length).toBe(b.length);
  let maxAbs = 0;
  let sum = 0;
  let differing = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d > maxAbs) maxAbs = d;
    sum += d;
    if (d !== 0) differing++;
  }
  return { maxAbs, meanAbs: sum / a.length, differing };
}

/**
 * Decodes `path` with the reference tool; returns what it wrote for frame `frame`, clamped to the
 * stored range.
 */
async function referenceDecode(
  path: string,
  r: Radiograph,
  name: string,
  frame = 0,
): Promise<Int32Array> {
  const [cmd, args] = REFERENCE_DECODERS[r.transferSyntaxUid]!;
  const out = await convert(cmd, args, path, name);
  const cells = rawCells(out, r.bitsAllocated as 8 | 16);
  // The tools write the codec's samples as they come: a lossy 12-bit JPEG of a 10-bit image can
  // overshoot to 1024. readRadiograph clamps those to the stored range; so does the comparison.
  const max = 2 ** r.bitsStored - 1;
  const n = r.width * r.height;
  return Int32Array.from(cells.subarray(frame * n, (frame + 1) * n), (v) => Math.min(v, max));
}

const LOSSLESS = [
  ["RG3_JPLL.dcm", "1.2.840.10008.1.2.4.70"],
  ["RG3_JLSL.dcm", "1.2.840.10008.1.2.4.80"],
  ["RG3_J2KR.dcm", "1.2.840.10008.1.2.4.90"],
  ["RG3_RLE.dcm", "1.2.840.10008.1.2.5"],
] as const;

/**
 * Measured errors of the lossy WG04 files against RG3_UNC (10 bits stored, range 0..1023), with
 * dcmjs-codecs 0.0.8 (JPEG, JPEG 2000) and CharLS of @cornerstonejs/codec-charls 1.2.7 (JPEG-LS);
 * DCMTK 3.6.7 and GDCM 3.0.21 give exactly the same samples.
 *   RG3_JPLY (JPEG extended 12-bit, ratio 67:1): max 48 (4.7 % of the range), mean 1.767
 *   RG3_JLSN (JPEG-LS near-lossless, ratio 21:1): max 4 (the NEAR bound), mean 1.543
 *   RG3_J2KI (JPEG 2000 irreversible, ratio 30:1): max 9 (0.9 %), mean 0.777
 */
const LOSSY = [
  ["RG3_JPLY.dcm", "1.2.840.10008.1.2.4.51", { maxAbs: 48, meanAbs: 1.77 }],
  ["RG3_JLSN.dcm", "1.2.840.10008.1.2.4.81", { maxAbs: 4, meanAbs: 1.55 }],
  ["RG3_J2KI.dcm", "1.2.840.10008.1.2.4.91", { maxAbs: 9, meanAbs: 0.78 }],
] as const;

describe("RG3_UNC", () => {
  it("reads the uncompressed reference", () => {
    expect(unc).toMatchObject({
      width: 1760,
      height: 1760,
      photometric: "MONOCHROME1",
      bitsAllocated: 16,
      bitsStored: 10,
      pixelRepresentation: 0,
      transferSyntaxUid: "1.2.840.10008.1.2.1",
      voi: { kind: "window", center: 550, width: 1024, function: "LINEAR" },
      spacing: null,
    });
    const raw = rawCells(`${WG04_DIR}RG3_UNC.dcm`, 16);
    expect(diff(unc.stored, raw).maxAbs).toBe(0);
  });

  it("shows bone (high stored values) dark, as MONOCHROME1 requires", () => {
    // MONOCHROME1: the higher the value, the darker. Inside the window the mapping is strictly
    // decreasing, so display and stored must be strongly negatively correlated.
    const n = unc.stored.length;
    let ms = 0;
    let md = 0;
    for (let i = 0; i < n; i++) {
      ms += unc.stored[i]!;
      md += unc.display[i]!;
    }
    ms /= n;
    md /= n;
    let sxy = 0;
    let sxx = 0;
    let syy = 0;
    for (let i = 0; i < n; i++) {
      const x = unc.stored[i]! - ms;
      const y = unc.display[i]! - md;
      sxy += x * y;
      sxx += x * x;
      syy += y * y;
    }
    expect(sxy / Math.sqrt(sxx * syy)).toBeLessThan(-0.99);
    // The highest stored value (densest bone) is near black, the lowest near white.
    let hi = 0;
    let lo = 0;
    for (let i = 0; i < n; i++) {
      if (unc.stored[i]! > unc.stored[hi]!) hi = i;
      if (unc.stored[i]! < unc.stored[lo]!) lo = i;
    }
    expect(unc.display[hi]).toBeLessThanOrEqual(10);
    expect(unc.display[lo]).toBeGreaterThanOrEqual(245);
  });

  it("renders like DCMTK's dcmj2pnm with the first window, within one grey level", async () => {
    // dcmj2pnm truncates where we round: ours is the same or one level lighter.
    const out = join(dir, "unc.pgm");
    await run("dcmj2pnm", ["+Wi", "1", `${WG04_DIR}RG3_UNC.dcm`, out]);
    const pgm = readFileSync(out);
    const theirs = pgm.subarray(pgm.length - 1760 * 1760);
    expect(diff(unc.display, theirs).maxAbs).toBeLessThanOrEqual(1);
  });
});

describe.each(LOSSLESS)("lossless %s", (file, syntax) => {
  it("decodes to exactly the stored values (and display) of RG3_UNC", async () => {
    const r = await readRadiograph(readFileSync(`${WG04_DIR}${file}`));
    expect(r.transferSyntaxUid).toBe(syntax);
    expect(r.lossyTransferSyntax).toBe(false);
    expect(diff(r.stored, unc.stored)).toEqual({ maxAbs: 0, meanAbs: 0, differing: 0 });
    expect(diff(r.display, unc.display).maxAbs).toBe(0);
  });

  it("decodes exactly like DCMTK / GDCM", async () => {
    const path = `${WG04_DIR}${file}`;
    const r = await readRadiograph(readFileSync(path));
    const theirs = await referenceDecode(path, r, `${file}.raw.dcm`);
    expect(diff(r.stored, theirs).maxAbs).toBe(0);
  });
});

describe.each(LOSSY)("lossy %s", (file, syntax, bound) => {
  it(`stays within max ${bound.maxAbs} / mean ${bound.meanAbs} of RG3_UNC (10-bit)`, async () => {
    const r = await readRadiograph(readFileSync(`${WG04_DIR}${file}`));
    expect(r.transferSyntaxUid).toBe(syntax);
    expect(r.lossyTransferSyntax).toBe(true);
    const d = diff(r.stored, unc.stored);
    expect(d.maxAbs).toBeLessThanOrEqual(bound.maxAbs);
    expect(d.meanAbs).toBeLessThanOrEqual(bound.meanAbs);
    expect(d.differing).toBeGreaterThan(0); // really lossy: not the reference by accident
  });

  it("decodes like DCMTK / GDCM within one level (measured: identical)", async () => {
    const path = `${WG04_DIR}${file}`;
    const r = await readRadiograph(readFileSync(path));
    const theirs = await referenceDecode(path, r, `${file}.raw.dcm`);
    expect(diff(r.stored, theirs).maxAbs).toBeLessThanOrEqual(1);
  });
});

describe("syntaxes generated from RG3_UNC with DCMTK", () => {
  const UNC = `${WG04_DIR}RG3_UNC.dcm`;

  it.each([
    ["+ti", "1.2.840.10008.1.2"],
    ["+te", "1.2.840.10008.1.2.1"],
    ["+tb", "1.2.840.10008.1.2.2"],
    ["+td", "1.2.840.10008.1.2.1.99"],
  ])("dcmconv %s (%s) reads exactly like RG3_UNC", async (option, syntax) => {
    const out = await convert("dcmconv", [option], UNC, `conv${option.slice(1)}.dcm`);
    const r = await readRadiograph(readFileSync(out));
    expect(r.transferSyntaxUid).toBe(syntax);
    expect(diff(r.stored, unc.stored).maxAbs).toBe(0);
    expect(diff(r.display, unc.display).maxAbs).toBe(0);
  });

  it.each([
    ["dcmcjpeg", ["+el", "+sv", "6"], "1.2.840.10008.1.2.4.57"],
    ["dcmcjpeg", ["+e1", "-ot", "+fs", "64"], "1.2.840.10008.1.2.4.70"],
    ["dcmcjpls", ["+el"], "1.2.840.10008.1.2.4.80"],
    ["dcmcrle", [], "1.2.840.10008.1.2.5"],
    ["gdcmconv", ["--j2k"], "1.2.840.10008.1.2.4.90"],
  ] as const)("%s %j (%s) is lossless", async (cmd, args, syntax) => {
    const out = await convert(cmd, [...args], UNC, `gen-${syntax}.dcm`);
    const r = await readRadiograph(readFileSync(out));
    expect(r.transferSyntaxUid).toBe(syntax);
    expect(diff(r.stored, unc.stored).maxAbs).toBe(0);
  });

  it("dcmcjpeg +ee (JPEG extended 12-bit, .51) decodes like dcmdjpeg", async () => {
    const out = await convert("dcmcjpeg", ["+ee", "+q", "90"], UNC, "gen-ext.dcm");
    const r = await readRadiograph(readFileSync(out));
    expect(r.transferSyntaxUid).toBe("1.2.840.10008.1.2.4.51");
    const theirs = await referenceDecode(out, r, "gen-ext.raw.dcm");
    expect(diff(r.stored, theirs).maxAbs).toBeLessThanOrEqual(1);
    // DCMTK rescales the 10-bit values to 12 bits (x 4095/1023) and scales the window with them,
    // so the display is what to compare. Quality 90, measured: max 2, mean 0.128 grey levels.
    expect(r.bitsStored).toBe(12);
    const d = diff(r.display, unc.display);
    expect(d.maxAbs).toBeLessThanOrEqual(2);
    expect(d.meanAbs).toBeLessThanOrEqual(0.15);
  });

  it("JPEG-LS near-lossless of DCMTK (+en, NEAR 2) stays within NEAR", async () => {
    const out = await convert("dcmcjpls", ["+en", "+md", "2"], UNC, "gen-jlsn.dcm");
    const r = await readRadiograph(readFileSync(out));
    expect(r.transferSyntaxUid).toBe("1.2.840.10008.1.2.4.81");
    expect(diff(r.stored, unc.stored).maxAbs).toBeLessThanOrEqual(2); // measured: 2, mean 0.886
    const theirs = await referenceDecode(out, r, "gen-jlsn.raw.dcm");
    expect(diff(r.stored, theirs).maxAbs).toBe(0);
  });
});

describe("8-bit JPEG baseline (.50) and multi-frame encapsulated data, made with DCMTK", () => {
  /**
   * An 8-bit MONOCHROME2 version of RG3 (stored >> 2): `size` x `size` from the centre, frame f
   * lifted by 40 f grey levels (clamped), so that every frame differs.
   */
  async function eightBit(name: string, frames: number, size = 1760): Promise<string> {
    const pixels = new Uint16Array(size * size * frames);
    const origin = (1760 - size) >> 1;
    for (let f = 0; f < frames; f++) {
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const v = (unc.stored[(origin + y) * 1760 + origin + x]! >> 2) + 40 * f;
          pixels[(f * size + y) * size + x] = Math.min(255, v);
        }
      }
    }
    const path = join(dir, name);
    const elements = syntheticImage({
      rows: size,
      columns: size,
      pixels,
      bitsAllocated: 8,
      numberOfFrames: frames > 1 ? frames : undefined,
    });
    await writeFile(path, writePart10(elements));
    return path;
  }

  it("decodes JPEG baseline like dcmdjpeg, close to the 8-bit source", async () => {
    const source = await eightBit("eight.dcm", 1);
    const src = await readRadiograph(readFileSync(source));
    const out = await convert("dcmcjpeg", ["+eb", "+q", "90"], source, "eight-jpeg.dcm");
    const r = await readRadiograph(readFileSync(out));
    expect(r.transferSyntaxUid).toBe("1.2.840.10008.1.2.4.50");
    expect(r.bitsAllocated).toBe(8);
    const theirs = await referenceDecode(out, r, "eight-jpeg.raw.dcm");
    expect(diff(r.stored, theirs).maxAbs).toBeLessThanOrEqual(1);
    // Quality 90, measured: max 9, mean 0.293 of 0..255.
    const d = diff(r.stored, src.stored);
    expect(d.maxAbs).toBeLessThanOrEqual(9);
    expect(d.meanAbs).toBeLessThanOrEqual(0.3);
  });

  it.each([
    ["dcmcjpeg", ["+eb"], "offset table, one fragment per frame"],
    ["dcmcjpeg", ["+eb", "-ot"], "empty offset table, one fragment per frame"],
    ["dcmcjpeg", ["+el", "-ot", "+fs", "2"], "empty offset table, several fragments per frame"],
    ["dcmcjpls", ["-ot", "+fs", "2"], "JPEG-LS, empty offset table, several fragments per frame"],
    ["dcmcrle", [], "RLE, one fragment per frame"],
  ] as const)("takes frame 0 of a 3-frame %s file (%j: %s)", async (cmd, args, _what) => {
    const source = await eightBit("frames.dcm", 3, 256);
    const out = await convert(cmd, [...args], source, `frames-${args.join("")}.dcm`);
    const r = await readRadiograph(readFileSync(out));
    expect(r.numberOfFrames).toBe(3);
    // (DCMTK's lossy JPEG also stretches 8-bit values to the full range: compare with dcmdjpeg.)
    const frame0 = await referenceDecode(out, r, `frames-${args.join("")}.f0.dcm`, 0);
    const frame1 = await referenceDecode(out, r, `frames-${args.join("")}.f1.dcm`, 1);
    const d0 = diff(r.stored, frame0);
    expect(d0.maxAbs).toBeLessThanOrEqual(r.lossyTransferSyntax ? 1 : 0);
    expect(diff(r.stored, frame1).meanAbs).toBeGreaterThan(d0.meanAbs + 1);
  });
});

describe("signed 12-bit pixels through the lossless codecs", () => {
  /** RG3's centre shifted into -2048..2047, as 16-bit cells sign-extended from 12 bits or not. */
  function signedCells(size: number, cellMask: number): Uint16Array {
    const origin = (1760 - size) >> 1;
    const pixels = new Uint16Array(size * size);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const v = (unc.stored[(origin + y) * 1760 + origin + x]! - 512) * 4 + ((x * y) & 3);
        pixels[y * size + x] = v & cellMask;
      }
    }
    return pixels;
  }

  async function signedSource(name: string, pixels: Uint16Array, pr: 0 | 1): Promise<string> {
    const path = join(dir, `${name}.dcm`);
    const image = { rows: 256, columns: 256, pixels, bitsStored: 12, pixelRepresentation: pr };
    await writeFile(path, writePart10(syntheticImage(image)));
    return path;
  }

  // Sign-extended cells (as most modalities write them) make DCMTK encode 16-bit samples.
  it.each([
    ["dcmcjpls", ["+el"], "1.2.840.10008.1.2.4.80"],
    ["dcmcrle", [], "1.2.840.10008.1.2.5"],
    ["dcmcjpeg", ["+e1"], "1.2.840.10008.1.2.4.70"],
  ] as const)(
    "%s %j (%s) keeps every stored value, negative ones included",
    async (cmd, args, syntax) => {
      const source = await signedSource(`signed-${cmd}`, signedCells(256, 0xffff), 1);
      const native = await readRadiograph(readFileSync(source));
      expect(Math.min(...native.stored)).toBeLessThan(-1000);
      const out = await convert(cmd, [...args], source, `signed-${cmd}.out.dcm`);
      const r = await readRadiograph(readFileSync(out));
      expect(r.transferSyntaxUid).toBe(syntax);
      expect(r.pixelRepresentation).toBe(1);
      expect(diff(r.stored, native.stored).maxAbs).toBe(0);
    },
  );

  it("sign-extends a JPEG-LS stream of 12-bit samples (two's complement in Bits Stored)", async () => {
    // DCMTK and GDCM encode signed data as 16-bit samples; other encoders use Bits Stored, as
    // CharLS's own encoder does here.
    const cells = signedCells(256, 0x0fff);
    const native = await readRadiograph(readFileSync(await signedSource("s12", cells, 1)));
    const charls = await createRequire(import.meta.url)("@cornerstonejs/codec-charls/wasmjs")();
    const encoder = new charls.JpegLSEncoder();
    const frameInfo = { width: 256, height: 256, bitsPerSample: 12, componentCount: 1 };
    encoder.getDecodedBuffer(frameInfo).set(new Uint8Array(cells.buffer));
    encoder.encode();
    const stream = new Uint8Array(encoder.getEncodedBuffer());
    encoder.delete();
    const image = syntheticImage({
      rows: 256,
      columns: 256,
      pixels: [],
      bitsStored: 12,
      pixelRepresentation: 1,
      pixelData: { offsets: [], fragments: [stream] },
    });
    const r = await readRadiograph(writePart10(image, "1.2.840.10008.1.2.4.80"));
    expect(r.pixelRepresentation).toBe(1);
    expect(diff(r.stored, native.stored).maxAbs).toBe(0);
  });
});
