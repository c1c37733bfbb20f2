/**
 * The grey-scale pipeline on small synthetic data sets: every expectation is computed here from
 * the formulas of PS3.3 C.11, independently of lut.ts.
 */
import { describe, expect, it } from "vitest";
import { type Radiograph, readRadiograph } from "./index.ts";
import { type DataElement, type SyntheticImage, syntheticImage, writePart10 } from "./synthetic.ts";

const ds = (tag: number, value: string): DataElement => ({ tag, vr: "DS", value });
const WINDOW_CENTER = 0x00281050;
const WINDOW_WIDTH = 0x00281051;
const VOI_FUNCTION = 0x00281056;
const RESCALE_INTERCEPT = 0x00281052;
const RESCALE_SLOPE = 0x00281053;

/** 0, 1, ..., n-1 as one row. */
const ramp = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

function read(img: SyntheticImage, syntax?: string): Promise<Radiograph> {
  return readRadiograph(writePart10(syntheticImage(img), syntax));
}

/** One row of `pixels` with one window, its VOI LUT Function when given, and `more` attributes. */
function windowed(
  pixels: number[],
  [center, width]: [string, string],
  voiFunction?: string,
  more: Partial<SyntheticImage> = {},
): Promise<Radiograph> {
  const fn: DataElement[] = voiFunction
    ? [{ tag: VOI_FUNCTION, vr: "CS", value: voiFunction }]
    : [];
  const { extra = [], ...rest } = more;
  return read({
    rows: 1,
    columns: pixels.length,
    pixels,
    ...rest,
    extra: [...extra, ds(WINDOW_CENTER, center), ds(WINDOW_WIDTH, width), ...fn],
  });
}

/** PS3.3 C.11.2.1.2.1, with ymin 0 and ymax 255, rounded to the nearest grey. */
function linear(x: number, c: number, w: number): number {
  if (x <= c - 0.5 - (w - 1) / 2) return 0;
  if (x > c - 0.5 + (w - 1) / 2) return 255;
  return Math.round(((x - (c - 0.5)) / (w - 1) + 0.5) * 255);
}

describe("modality LUT", () => {
  it("applies Rescale Slope and Intercept to the stored values", async () => {
    const r = await read({
      rows: 1,
      columns: 5,
      pixels: [0, 1, 2, 100, 4095],
      bitsStored: 12,
      extra: [ds(RESCALE_SLOPE, "0.5"), ds(RESCALE_INTERCEPT, "-1024")],
    });
    expect([...r.stored]).toEqual([0, 1, 2, 100, 4095]);
    expect([...r.values]).toEqual([-1024, -1023.5, -1023, -974, 1023.5]);
    expect(r.modality).toEqual({ kind: "rescale", slope: 0.5, intercept: -1024 });
  });

  it("uses identity when there is no rescale", async () => {
    const r = await read({ rows: 1, columns: 3, pixels: [7, 8, 9] });
    expect([...r.values]).toEqual([7, 8, 9]);
    expect(r.modality).toEqual({ kind: "rescale", slope: 1, intercept: 0 });
  });

  it("applies the Modality LUT Sequence instead of rescale, clamping outside its range", async () => {
    const lutItem: DataElement[] = [
      { tag: 0x00283002, vr: "US", value: [4, 10, 16] }, // 4 entries, first maps stored 10
      { tag: 0x00283004, vr: "LO", value: "TEST" },
      { tag: 0x00283006, vr: "US", value: [100, 300, 200, 65535] },
    ];
    const r = await read({
      rows: 1,
      columns: 6,
      pixels: [0, 10, 11, 12, 13, 50],
      extra: [
        { tag: 0x00283000, vr: "SQ", value: [lutItem] },
        ds(RESCALE_SLOPE, "7"), // ignored: the LUT wins
      ],
    });
    expect([...r.values]).toEqual([100, 100, 300, 200, 65535, 65535]);
    expect(r.modality).toEqual({ kind: "lut" });
  });

  it("reads a signed first-mapped value of a Modality LUT for signed pixels", async () => {
    const lutItem: DataElement[] = [
      { tag: 0x00283002, vr: "SS", value: [3, -1, 16] },
      { tag: 0x00283006, vr: "OW", value: new Uint16Array([5, 6, 7]) },
    ];
    const r = await read({
      rows: 1,
      columns: 4,
      pixels: [0xffff, 0, 1, 0xfffe], // -1, 0, 1, -2
      pixelRepresentation: 1,
      extra: [{ tag: 0x00283000, vr: "SQ", value: [lutItem] }],
    });
    expect([...r.stored]).toEqual([-1, 0, 1, -2]);
    expect([...r.values]).toEqual([5, 6, 7, 5]);
  });
});

describe("stored values", () => {
  it("masks to Bits Stored and sign-extends signed pixels", async () => {
    // 12 bits stored in 16: the top nibble is not pixel data (an overlay, say).
    const r = await read({
      rows: 1,
      columns: 6,
      pixels: [0x0800, 0x0fff, 0x07ff, 0xa001, 0xf000, 0x0000],
      bitsStored: 12,
      pixelRepresentation: 1,
      extra: [ds(WINDOW_CENTER, "0"), ds(WINDOW_WIDTH, "4096")],
    });
    expect([...r.stored]).toEqual([-2048, -1, 2047, 1, 0, 0]);
    expect(r.pixelRepresentation).toBe(1);
    // Signed values go through the window like any other: most negative darkest.
    expect(r.display[0]).toBe(0);
    expect(r.display[2]).toBe(255);
  });

  it("masks unsigned pixels whose high bits are set", async () => {
    const r = await read({ rows: 1, columns: 3, pixels: [0xf3ff, 0x8001, 0x0400], bitsStored: 10 });
    expect([...r.stored]).toEqual([1023, 1, 0]);
  });

  it("honours a High Bit above Bits Stored - 1", async () => {
    // 12 bits stored in bits 15..4 (High Bit 15): the low nibble is not pixel data.
    const r = await read({
      rows: 1,
      columns: 3,
      pixels: [0xfff0, 0x001f, 0x8000],
      bitsStored: 12,
      highBit: 15,
    });
    expect([...r.stored]).toEqual([4095, 1, 2048]);
  });

  it("reads 8-bit pixels", async () => {
    const r = await read({ rows: 2, columns: 2, pixels: [0, 1, 128, 255], bitsAllocated: 8 });
    expect([...r.stored]).toEqual([0, 1, 128, 255]);
    expect(r.bitsAllocated).toBe(8);
  });

  it("decodes frame 0 of a multi-frame image", async () => {
    const r = await read({
      rows: 1,
      columns: 3,
      numberOfFrames: 2,
      pixels: [1, 2, 3, 40, 50, 60],
    });
    expect([...r.stored]).toEqual([1, 2, 3]);
    expect(r.numberOfFrames).toBe(2);
  });
});

describe("VOI", () => {
  it("applies the first window with LINEAR (PS3.3 C.11.2.1.2.1) by default", async () => {
    const pixels = ramp(200);
    const r = await read({
      rows: 10,
      columns: 20,
      pixels,
      extra: [
        ds(WINDOW_CENTER, "100\\1000"),
        ds(WINDOW_WIDTH, "50\\2000"),
        { tag: 0x00281055, vr: "LO", value: "FIRST\\SECOND" },
      ],
    });
    expect(r.voi).toMatchObject({ kind: "window", center: 100, width: 50, function: "LINEAR" });
    expect([...r.display]).toEqual(pixels.map((x) => linear(x, 100, 50)));
    // The edges of the standard's piecewise definition.
    expect(r.display[75]).toBe(0); // x <= c - 0.5 - (w-1)/2 = 75
    expect(r.display[76]).toBe(5); // ((76 - 99.5) / 49 + 0.5) * 255 = 5.2
    expect(r.display[124]).toBe(255); // top of the ramp: ((124 - 99.5) / 49 + 0.5) = 1
    expect(r.display[125]).toBe(255);
  });

  it("applies the window to modality values (after rescale)", async () => {
    const r = await windowed([0, 1000, 1024, 2048], ["40", "400"], undefined, {
      extra: [ds(RESCALE_INTERCEPT, "-1024")],
    });
    expect([...r.display]).toEqual([-1024, -24, 0, 1024].map((x) => linear(x, 40, 400)));
  });

  it("handles a LINEAR window of width 1 as a threshold", async () => {
    const r = await windowed([8, 9, 10, 11], ["10", "1"]);
    expect([...r.display]).toEqual([0, 0, 255, 255]); // x <= 9.5 black, x > 9.5 white
  });

  it("applies LINEAR_EXACT (C.11.2.1.3.2)", async () => {
    const pixels = ramp(40);
    const r = await windowed(pixels, ["20", "10"], "LINEAR_EXACT");
    const exact = (x: number) =>
      x <= 15 ? 0 : x > 25 ? 255 : Math.round(((x - 20) / 10 + 0.5) * 255);
    expect(r.voi).toMatchObject({ kind: "window", function: "LINEAR_EXACT" });
    expect([...r.display]).toEqual(pixels.map(exact));
    expect(r.display[20]).toBe(128); // the centre is mid-grey (127.5 rounds up)
  });

  it("applies SIGMOID (C.11.2.1.3.1)", async () => {
    const pixels = ramp(100);
    const r = await windowed(pixels, ["50", "20"], "SIGMOID");
    const sigmoid = (x: number) => Math.round(255 / (1 + Math.exp((-4 * (x - 50)) / 20)));
    expect(r.voi).toMatchObject({ kind: "window", function: "SIGMOID" });
    expect([...r.display]).toEqual(pixels.map(sigmoid));
  });

  it("inverts MONOCHROME1: the highest value is black, the lowest white", async () => {
    const pixels = [0, 100, 200, 1023];
    const mono2 = await windowed(pixels, ["512", "1024"], undefined, { bitsStored: 10 });
    const mono1 = await windowed(pixels, ["512", "1024"], undefined, {
      bitsStored: 10,
      photometric: "MONOCHROME1",
    });
    expect(mono1.photometric).toBe("MONOCHROME1");
    expect(mono1.display[3]).toBe(0);
    expect(mono1.display[0]).toBe(255);
    expect([...mono1.display]).toEqual([...mono2.display].map((g) => 255 - g));
    expect([...mono1.values]).toEqual([...mono2.values]); // inversion is a display matter only
  });

  it("applies the VOI LUT Sequence when there is no window", async () => {
    const item: DataElement[] = [
      { tag: 0x00283002, vr: "US", value: [4, 2, 12] }, // 4 entries from value 2, 12-bit output
      { tag: 0x00283006, vr: "US", value: [0, 1365, 2730, 4095] },
    ];
    const r = await read({
      rows: 1,
      columns: 7,
      pixels: [0, 2, 3, 4, 5, 6, 100],
      extra: [{ tag: 0x00283010, vr: "SQ", value: [item] }],
    });
    expect(r.voi).toEqual({ kind: "voi-lut" });
    const grey = (lut: number) => Math.round((lut / 4095) * 255);
    expect([...r.display]).toEqual([0, 0, 1365, 2730, 4095, 4095, 4095].map(grey));
  });

  it("reads a VOI LUT of 8-bit entries packed two per word, with a negative first input", async () => {
    const item: DataElement[] = [
      { tag: 0x00283002, vr: "SS", value: [4, -2, 8] },
      // entries 10, 20, 30, 40 packed little-endian into two 16-bit words
      { tag: 0x00283006, vr: "OW", value: new Uint16Array([10 | (20 << 8), 30 | (40 << 8)]) },
    ];
    const r = await read({
      rows: 1,
      columns: 5,
      pixels: [0, 1, 2, 3, 4],
      extra: [ds(RESCALE_INTERCEPT, "-2"), { tag: 0x00283010, vr: "SQ", value: [item] }],
    });
    expect([...r.values]).toEqual([-2, -1, 0, 1, 2]);
    const grey = (lut: number) => Math.round((lut / 255) * 255);
    expect([...r.display]).toEqual([10, 20, 30, 40, 40].map(grey));
  });

  it("prefers the window over the VOI LUT Sequence", async () => {
    const item: DataElement[] = [
      { tag: 0x00283002, vr: "US", value: [2, 0, 8] },
      { tag: 0x00283006, vr: "US", value: [255, 0] },
    ];
    const r = await windowed([0, 1], ["0.5", "1"], undefined, {
      extra: [{ tag: 0x00283010, vr: "SQ", value: [item] }],
    });
    expect(r.voi.kind).toBe("window");
    expect([...r.display]).toEqual([0, 255]);
  });

  it("chooses an automatic window from the 0.5 % and 99.5 % percentiles without VOI attributes", async () => {
    // 1000 distinct values: nearest-rank percentiles are the 5th and the 995th, i.e. 4 and 994.
    const pixels = ramp(1000);
    const r = await read({ rows: 20, columns: 50, pixels });
    expect(r.voi).toEqual({ kind: "auto", center: 499, width: 990, function: "LINEAR_EXACT" });
    const auto = (x: number) => (x <= 4 ? 0 : x >= 994 ? 255 : Math.round(((x - 4) / 990) * 255));
    expect([...r.display]).toEqual(pixels.map(auto));
  });

  it("is not moved by a few outliers in the automatic window", async () => {
    // 992 pixels at 100..199, plus 4 at 0 and 4 at 4095 (0.4 % each: dead / hot pixels).
    const pixels = [...Array.from({ length: 992 }, (_, i) => 100 + (i % 100)), 0, 0, 0, 0];
    pixels.push(4095, 4095, 4095, 4095);
    const r = await read({ rows: 10, columns: 100, pixels, bitsStored: 12 });
    expect(r.voi.kind).toBe("auto");
    expect(r.voi.center! - r.voi.width! / 2).toBeGreaterThanOrEqual(100);
    expect(r.voi.center! + r.voi.width! / 2).toBeLessThanOrEqual(199);
  });

  it("computes the automatic window on modality values (negative slope)", async () => {
    const pixels = ramp(1000);
    const r = await read({ rows: 20, columns: 50, pixels, extra: [ds(RESCALE_SLOPE, "-1")] });
    expect(r.voi).toMatchObject({ kind: "auto", center: -500, width: 990 });
    expect(r.display[0]).toBe(255); // value 0 is the highest modality value
    expect(r.display[999]).toBe(0);
  });

  it("shows a uniform image as mid-grey in the automatic window", async () => {
    const r = await read({ rows: 2, columns: 2, pixels: [7, 7, 7, 7] });
    expect([...r.display]).toEqual([128, 128, 128, 128]);
  });

  it("falls back to the automatic window when the header's window is invalid", async () => {
    const r = await windowed([0, 1, 2, 3], ["1", "0"]);
    expect(r.voi.kind).toBe("auto");
  });
});

describe("spacing", () => {
  const img = (extra: DataElement[]) => read({ rows: 1, columns: 1, pixels: [0], extra });
  const PIXEL_SPACING = 0x00280030;
  const IMAGER_PIXEL_SPACING = 0x00181164;
  const MAGNIFICATION = 0x00181114;

  it("uses Pixel Spacing when present, even with Imager Pixel Spacing", async () => {
    const r = await img([
      ds(PIXEL_SPACING, "0.1\\0.2"),
      ds(IMAGER_PIXEL_SPACING, "0.15\\0.15"),
      ds(MAGNIFICATION, "1.5"),
    ]);
    expect(r.spacing).toEqual({ rowMm: 0.1, colMm: 0.2, source: "PixelSpacing" });
  });

  it("uses Imager Pixel Spacing as is without a magnification factor", async () => {
    const r = await img([ds(IMAGER_PIXEL_SPACING, "0.143\\0.144")]);
    expect(r.spacing).toEqual({ rowMm: 0.143, colMm: 0.144, source: "ImagerPixelSpacing" });
  });

  it("divides Imager Pixel Spacing by the Estimated Radiographic Magnification Factor", async () => {
    const r = await img([ds(IMAGER_PIXEL_SPACING, "0.15\\0.12"), ds(MAGNIFICATION, "1.2")]);
    expect(r.spacing?.source).toBe("ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor");
    expect(r.spacing?.rowMm).toBeCloseTo(0.125, 12);
    expect(r.spacing?.colMm).toBeCloseTo(0.1, 12);
  });

  it("is null without spacing, and ignores a malformed Pixel Spacing", async () => {
    expect((await img([])).spacing).toBeNull();
    const r = await img([ds(PIXEL_SPACING, "0\\abc"), ds(IMAGER_PIXEL_SPACING, "0.2\\0.2")]);
    expect(r.spacing).toEqual({ rowMm: 0.2, colMm: 0.2, source: "ImagerPixelSpacing" });
  });
});
