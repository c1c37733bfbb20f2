/**
 * The secondary capture: one RGB image per study revision showing what the AI graded. Per knee, the
 * crop the model saw and the same crop with the heat map blended over it, under a header with the
 * side and the grade; a banner on top says the result is unverified (and, for a "smoke" model,
 * that it is a test model). With no graded knee, a panel says why. All text is burned in.
 */
import sharp, { type OverlayOptions } from "sharp";
import { KL_GRADE_WORDS } from "./codes.ts";
import {
  clip,
  codingSchemeIdentification,
  contributingEquipment,
  type Dataset,
  dicomDateTime,
  patientAndStudy,
  writePart10,
} from "./dataset.ts";
import { seriesDescription, validate } from "./sr-document.ts";
import {
  isTestModel,
  lateralityAssumed,
  orderedKnees,
  reportLines,
  TEST_MODEL_NOTICE,
} from "./text.ts";
import type { KneeFinding, ReportInput } from "./types.ts";
import { derivedUids } from "./uids.ts";

export const SECONDARY_CAPTURE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7";

/** Layout, pixels. A tile shows one 224-px crop at twice its size. */
export const TILE = 448;
const BANNER = 64;
const TEST_BANNER = 40;
const HEADER = 64;
const FOOTER = 112;
const MARGIN = 16;
const NO_KNEE_LINE = 30;
export const BANNER_TEXT = "AI RESULT – NOT VERIFIED – REQUIRES REVIEW";

export interface SecondaryCaptureLayout {
  rows: number;
  columns: number;
  /** Left edge and tile count of each knee's column, in reading order. */
  knees: { left: number; tiles: number }[];
  top: number;
}

const tilesOf = (k: KneeFinding) => (k.heatmapPng ? 2 : 1);

/** The text of the panel shown when no knee was graded, wrapped to its width. */
function noKneeLines(input: ReportInput): string[] {
  const width = Math.floor((2 * TILE) / 11);
  const lines = reportLines(input).findings.filter(
    (l) =>
      !l.startsWith("AI-generated") &&
      !l.startsWith(TEST_MODEL_NOTICE) &&
      l !== "No knee was graded.",
  );
  return ["No knee was graded."].concat(lines.flatMap((l) => wrap(l, width))).slice(0, 20);
}

/** The image size the secondary capture will have for `input`. */
export function secondaryCaptureLayout(input: ReportInput): SecondaryCaptureLayout {
  const top = BANNER + (isTestModel(input) ? TEST_BANNER : 0);
  const knees: SecondaryCaptureLayout["knees"] = [];
  let x = MARGIN;
  for (const { knee } of orderedKnees(input.knees)) {
    const tiles = tilesOf(knee);
    knees.push({ left: x, tiles });
    x += tiles * TILE + MARGIN;
  }
  // At least two tiles wide, so the banners' text always fits.
  const columns = Math.max(x, 2 * TILE + 2 * MARGIN);
  const body =
    knees.length === 0
      ? 40 + NO_KNEE_LINE * noKneeLines(input).length + FOOTER / 2
      : HEADER + TILE + FOOTER;
  return { rows: top + body + MARGIN, columns, knees, top };
}

const escapeXml = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function svgText(
  x: number,
  y: number,
  text: string,
  size: number,
  fill: string,
  weight: "normal" | "bold" = "normal",
  anchor: "start" | "middle" = "start",
): string {
  return `<text x="${x}" y="${y}" font-family="DejaVu Sans, sans-serif" font-size="${size}" font-weight="${weight}" fill="${fill}" text-anchor="${anchor}">${escapeXml(text)}</text>`;
}

/** Splits text into lines of at most `width` characters, at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

/** A perceptually ordered colour map (blue → cyan → yellow → red) for heat values 0..1. */
function heatColour(t: number): [number, number, number] {
  const stops: [number, number, number, number][] = [
    [0, 0, 0, 160],
    [0.35, 0, 190, 230],
    [0.65, 250, 230, 0],
    [1, 230, 20, 0],
  ];
  for (let i = 1; i < stops.length; i++) {
    const [t1, r1, g1, b1] = stops[i]!;
    const [t0, r0, g0, b0] = stops[i - 1]!;
    if (t <= t1) {
      const f = (t - t0) / (t1 - t0);
      return [r0 + f * (r1 - r0), g0 + f * (g1 - g0), b0 + f * (b1 - b0)];
    }
  }
  return [230, 20, 0];
}

/** A grey PNG resized to size × size, one byte per pixel. */
async function greyTile(png: Uint8Array, size: number): Promise<Uint8Array> {
  const buf = await sharp(png)
    .greyscale()
    .resize(size, size, { fit: "fill", kernel: "cubic" })
    .toColourspace("b-w")
    .raw()
    .toBuffer();
  return new Uint8Array(buf);
}

function rgbFromGrey(grey: Uint8Array): Uint8Array {
  const rgb = new Uint8Array(grey.length * 3);
  for (let i = 0, o = 0; i < grey.length; i++, o += 3) {
    const g = grey[i]!;
    rgb[o] = g;
    rgb[o + 1] = g;
    rgb[o + 2] = g;
  }
  return rgb;
}

/**
 * The blended RGB of every (heat, grey) pair, `3 * (256 * heat + grey)`: opacity grows with the
 * heat (up to 60 %). A tile has 200,704 pixels and only 65,536 pairs exist, so the colour map is
 * evaluated once per process, with the same arithmetic, instead of once per pixel.
 */
let blendTable: Uint8Array | undefined;
function blendLookup(): Uint8Array {
  if (blendTable) return blendTable;
  const table = new Uint8Array(256 * 256 * 3);
  for (let h = 0; h < 256; h++) {
    const t = h / 255;
    const a = 0.6 * t;
    const colour = heatColour(t);
    for (let g = 0; g < 256; g++) {
      for (let c = 0; c < 3; c++) {
        table[3 * (256 * h + g) + c] = Math.round((1 - a) * g + a * colour[c]!);
      }
    }
  }
  blendTable = table;
  return table;
}

/** The crop with the heat map blended over it: opacity grows with the heat (up to 60 %). */
function blend(grey: Uint8Array, heat: Uint8Array): Uint8Array {
  const table = blendLookup();
  const rgb = new Uint8Array(grey.length * 3);
  for (let i = 0, o = 0; i < grey.length; i++, o += 3) {
    const at = 3 * (256 * heat[i]! + grey[i]!);
    rgb[o] = table[at]!;
    rgb[o + 1] = table[at + 1]!;
    rgb[o + 2] = table[at + 2]!;
  }
  return rgb;
}

/** The crop with its heat map blended over it (as in the secondary capture), an RGB PNG. */
export async function heatmapOverlayPng(
  cropPng: Uint8Array,
  heatmapPng: Uint8Array,
  size = TILE,
): Promise<Uint8Array> {
  const grey = await greyTile(cropPng, size);
  const rgb = blend(grey, await greyTile(heatmapPng, size));
  const png = await sharp(Buffer.from(rgb), { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toBuffer();
  return new Uint8Array(png);
}

/** What is drawn: pixel tiles, then the SVG of text and shapes over them. */
interface Drawing {
  tiles: OverlayOptions[];
  svg: string[];
}

/** The red "not verified" banner, and the yellow test-model banner under it for a smoke model. */
function banners(input: ReportInput, columns: number): string[] {
  const svg = [
    `<rect x="0" y="0" width="${columns}" height="${BANNER}" fill="#b00020"/>`,
    svgText(columns / 2, 43, BANNER_TEXT, 30, "#ffffff", "bold", "middle"),
  ];
  if (isTestModel(input)) {
    svg.push(
      `<rect x="0" y="${BANNER}" width="${columns}" height="${TEST_BANNER}" fill="#ffd400"/>`,
      svgText(columns / 2, BANNER + 29, TEST_MODEL_NOTICE, 24, "#000000", "bold", "middle"),
    );
  }
  return svg;
}

type KneeColumn = SecondaryCaptureLayout["knees"][number];

/** The knee's header: its side, then its grade with the grade's words and probability. */
function kneeHeader(knee: KneeFinding, tracking: string, col: KneeColumn, top: number): string[] {
  const p = knee.probabilities[knee.grade] ?? 0;
  const grade = `${knee.grade} (${KL_GRADE_WORDS[knee.grade]}) · probability ${Math.round(p * 100)} %`;
  return [
    svgText(col.left, top + 28, tracking.toUpperCase(), 24, "#ffffff", "bold"),
    svgText(
      col.left,
      top + 56,
      col.tiles > 1 ? `Kellgren–Lawrence grade ${grade}` : `KL grade ${grade}`,
      20,
      "#ffe066",
    ),
  ];
}

const rgbTile = (rgb: Uint8Array, left: number, top: number): OverlayOptions => ({
  input: Buffer.from(rgb),
  raw: { width: TILE, height: TILE, channels: 3 },
  left,
  top,
});

/** The crop the model saw and, beside it, the heat map over it — or a gap saying there is none. */
async function kneeTiles(knee: KneeFinding, col: KneeColumn, tileTop: number): Promise<Drawing> {
  const width = col.tiles * TILE;
  if (!knee.cropPng) {
    return {
      tiles: [],
      svg: [
        `<rect x="${col.left}" y="${tileTop}" width="${width}" height="${TILE}" fill="#202020"/>`,
        svgText(
          col.left + width / 2,
          tileTop + TILE / 2,
          "crop not available",
          20,
          "#bbbbbb",
          "normal",
          "middle",
        ),
      ],
    };
  }
  const grey = await greyTile(knee.cropPng, TILE);
  const drawing: Drawing = { tiles: [rgbTile(rgbFromGrey(grey), col.left, tileTop)], svg: [] };
  if (knee.heatmapPng) {
    const heat = await greyTile(knee.heatmapPng, TILE);
    drawing.tiles.push(rgbTile(blend(grey, heat), col.left + TILE, tileTop));
    drawing.svg.push(
      `<rect x="${col.left + TILE}" y="${tileTop + TILE - 28}" width="${TILE}" height="28" fill="#000000" fill-opacity="0.6"/>`,
      svgText(
        col.left + TILE + 8,
        tileTop + TILE - 9,
        "heat map: where the model looked",
        16,
        "#ffffff",
      ),
    );
  }
  return drawing;
}

/** The knee's caveats under its tiles (low confidence, side not determined or assumed). */
function kneeNotes(knee: KneeFinding, col: KneeColumn, tileTop: number): string[] {
  const notes: string[] = [];
  if (knee.lowConfidence) {
    notes.push(
      `Low localisation confidence (score ${knee.localisationScore.toFixed(2)}): check the region.`,
    );
  }
  if (knee.laterality === "U") notes.push("Side not determined: check the side marker.");
  else if (lateralityAssumed(knee)) notes.push("Side assumed: check the side marker.");
  const noteLines = notes.flatMap((n) => wrap(n, Math.floor((col.tiles * TILE) / 10)));
  return noteLines
    .slice(0, 4)
    .map((line, j) => svgText(col.left, tileTop + TILE + 26 + 24 * j, line, 18, "#ff9e80"));
}

/** One knee's column: header, tiles, caveats. */
async function kneeColumn(
  knee: KneeFinding,
  tracking: string,
  col: KneeColumn,
  top: number,
): Promise<Drawing> {
  const tileTop = top + HEADER;
  const tiles = await kneeTiles(knee, col, tileTop);
  return {
    tiles: tiles.tiles,
    svg: [...kneeHeader(knee, tracking, col, top), ...tiles.svg, ...kneeNotes(knee, col, tileTop)],
  };
}

/** The panel saying why, when no knee was graded. */
const noKneePanel = (input: ReportInput, top: number): string[] =>
  noKneeLines(input).map((line, j) => {
    const first = j === 0;
    return svgText(
      MARGIN,
      top + 40 + NO_KNEE_LINE * j,
      line,
      first ? 26 : 20,
      "#ffffff",
      first ? "bold" : "normal",
    );
  });

/** The algorithm and the content date, bottom left. */
function footer(input: ReportInput, rows: number): string {
  const text = `${input.algorithm.name} ${input.algorithm.version} · ${dicomDateTime(input.contentDateTime).date}`;
  return svgText(MARGIN, rows - 6, text, 14, "#9e9e9e");
}

/** The drawing on black: tiles first, the SVG over them; RGB, 8 bits per sample. */
async function flatten(drawing: Drawing, columns: number, rows: number): Promise<Uint8Array> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${columns}" height="${rows}">${drawing.svg.join("")}</svg>`;
  const rgb = await sharp({
    create: { width: columns, height: rows, channels: 3, background: { r: 0, g: 0, b: 0 } },
  })
    .composite([...drawing.tiles, { input: Buffer.from(svg), left: 0, top: 0 }])
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (rgb.info.channels !== 3 || rgb.info.width !== columns || rgb.info.height !== rows) {
    throw new Error(`unexpected render ${rgb.info.width}x${rgb.info.height}x${rgb.info.channels}`);
  }
  return new Uint8Array(rgb.data);
}

/** The RGB pixels of the secondary capture and its size. */
export async function renderSecondaryCapture(
  input: ReportInput,
): Promise<{ rows: number; columns: number; rgb: Uint8Array }> {
  const layout = secondaryCaptureLayout(input);
  const { rows, columns, top } = layout;
  const drawing: Drawing = { tiles: [], svg: banners(input, columns) };
  const knees = orderedKnees(input.knees);
  for (const [i, { knee, tracking }] of knees.entries()) {
    const column = await kneeColumn(knee, tracking, layout.knees[i]!, top);
    drawing.tiles.push(...column.tiles);
    drawing.svg.push(...column.svg);
  }
  if (knees.length === 0) drawing.svg.push(...noKneePanel(input, top));
  drawing.svg.push(footer(input, rows));
  return { rows, columns, rgb: await flatten(drawing, columns, rows) };
}

/** General Series Laterality (2C, the knee is a paired structure): R or L when all knees agree. */
function seriesLaterality(input: ReportInput): string {
  const sides = new Set(input.knees.map((k) => k.laterality));
  const [side] = [...sides];
  return sides.size === 1 && (side === "R" || side === "L") ? side : "";
}

/** The secondary capture (SC Image Storage, RGB 8-bit), Part 10, Explicit VR Little Endian. */
export async function writeSecondaryCapture(input: ReportInput): Promise<Uint8Array> {
  validate(input);
  const { rows, columns, rgb } = await renderSecondaryCapture(input);
  const uids = derivedUids(input).secondaryCapture;
  const { date, time, offset } = dicomDateTime(input.contentDateTime);
  const sources = [
    ...new Map(input.knees.map((k) => [k.source.sopInstanceUid, k.source])).values(),
  ];
  const ds: Dataset = {
    SpecificCharacterSet: "ISO_IR 192",
    ImageType: ["DERIVED", "SECONDARY"],
    InstanceCreationDate: date,
    InstanceCreationTime: time,
    SOPClassUID: SECONDARY_CAPTURE_SOP_CLASS,
    SOPInstanceUID: uids.sopInstanceUid,
    ContentDate: date,
    ContentTime: time,
    Modality: "OT",
    ConversionType: "WSD",
    Manufacturer: clip(input.algorithm.manufacturer, 64),
    TimezoneOffsetFromUTC: offset,
    SeriesDescription: clip(seriesDescription(input, "images"), 64),
    ManufacturerModelName: clip(input.algorithm.name, 64),
    DerivationDescription: clip(
      `AI Kellgren-Lawrence grading: knee crops, heat maps and grades, ${input.algorithm.name} ${input.algorithm.version}`,
      1024,
    ),
    SoftwareVersions: clip(input.algorithm.softwareVersion, 64),
    ...patientAndStudy(input),
    SeriesInstanceUID: uids.seriesInstanceUid,
    SeriesNumber: input.secondaryCaptureSeriesNumber ?? input.seriesNumber + 1,
    InstanceNumber: 1,
    BodyPartExamined: "KNEE",
    Laterality: seriesLaterality(input),
    PatientOrientation: "",
    ImageComments: clip(
      `${BANNER_TEXT}${isTestModel(input) ? ` – ${TEST_MODEL_NOTICE}` : ""}`,
      10240,
    ),
    SamplesPerPixel: 3,
    PhotometricInterpretation: "RGB",
    PlanarConfiguration: 0,
    Rows: rows,
    Columns: columns,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    BurnedInAnnotation: "YES",
    RecognizableVisualFeatures: "NO",
    LossyImageCompression: "00",
    DateOfSecondaryCapture: date,
    TimeOfSecondaryCapture: time,
    SecondaryCaptureDeviceManufacturer: clip(input.algorithm.manufacturer, 64),
    SecondaryCaptureDeviceManufacturerModelName: clip(input.algorithm.name, 64),
    SecondaryCaptureDeviceSoftwareVersions: clip(input.algorithm.softwareVersion, 64),
    ContributingEquipmentSequence: contributingEquipment(input),
  };
  if (sources.length > 0) {
    ds.SourceImageSequence = sources.map((s) => ({
      ReferencedSOPClassUID: s.sopClassUid,
      ReferencedSOPInstanceUID: s.sopInstanceUid,
    }));
  }
  if (input.institutionName) ds.InstitutionName = clip(input.institutionName, 64);
  ds.CodingSchemeIdentificationSequence = codingSchemeIdentification(ds);
  return withPixelData(writePart10(ds), rgb);
}

/**
 * The Part 10 file `head` with Pixel Data (7FE0,0010), OB, appended as its last element — the
 * same bytes dcmjs writes for it, without copying the megabytes of pixels through dcmjs's
 * growing write buffer several times. No element of the capture sorts after Pixel Data.
 */
function withPixelData(head: Uint8Array, pixels: Uint8Array): Uint8Array {
  const length = pixels.length + (pixels.length % 2);
  const file = new Uint8Array(head.length + 12 + length);
  file.set(head, 0);
  const element = new DataView(file.buffer, head.length, 12);
  element.setUint16(0, 0x7fe0, true);
  element.setUint16(2, 0x0010, true);
  file[head.length + 4] = 0x4f; // "O"
  file[head.length + 5] = 0x42; // "B", then two reserved bytes (zero)
  element.setUint32(8, length, true);
  file.set(pixels, head.length + 12);
  return file;
}
