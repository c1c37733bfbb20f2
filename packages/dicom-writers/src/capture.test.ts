import { readFile } from "node:fs/promises";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { secondaryCaptureLayout, TILE, writeSecondaryCapture } from "./capture.ts";
import {
  dciodvfy,
  fixture,
  fixtureWithImages,
  image,
  pydicomRead,
  run,
  tempFile,
} from "./test-support.ts";
import { orderedKnees } from "./text.ts";
import { derivedUids, isValidUid } from "./uids.ts";

/** Decodes with DCMTK (dcmj2pnm → PNG) and returns the exit status and the decoded pixels. */
async function decode(path: string) {
  const png = `${path}.png`;
  const r = run("dcmj2pnm", ["+on", path, png]);
  if (r.status !== 0) return { status: r.status, out: r.out };
  const { data, info } = await sharp(await readFile(png))
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { status: r.status, out: r.out, data, info };
}

/** Laterality is empty when the capture shows both knees: dciodvfy warns (see README). */
const EXPECTED_WARNING = /attribute <Laterality>/;

describe("writeSecondaryCapture", () => {
  it("writes an RGB secondary capture of both knees that dciodvfy accepts and DCMTK decodes", async () => {
    const input = await fixtureWithImages();
    const path = await tempFile("sc.dcm", await writeSecondaryCapture(input));
    const check = dciodvfy(path);
    expect(check.lines[0]).toBe("SCImage");
    expect(check.errors).toEqual([]);
    expect(check.warnings.filter((w) => !EXPECTED_WARNING.test(w))).toEqual([]);

    const layout = secondaryCaptureLayout(input);
    // Two knees, each a crop tile and a heat-map tile, side by side.
    expect(layout.columns).toBe(16 + 2 * (2 * TILE + 16));
    const ds = pydicomRead(path);
    const uids = derivedUids(input).secondaryCapture;
    expect(ds).toMatchObject({
      SOPClassUID: "1.2.840.10008.5.1.4.1.1.7",
      SOPInstanceUID: uids.sopInstanceUid,
      SeriesInstanceUID: uids.seriesInstanceUid,
      StudyInstanceUID: input.context.studyInstanceUid,
      PatientID: "PAT-0042",
      PatientName: "Müller^Jörg",
      Modality: "OT",
      ConversionType: "WSD",
      BurnedInAnnotation: "YES",
      Rows: layout.rows,
      Columns: layout.columns,
      SamplesPerPixel: 3,
      PhotometricInterpretation: "RGB",
      BitsAllocated: 8,
      SeriesNumber: 992,
      SeriesDescription: "AI result images (kneegrade) – requires review",
    });
    expect(isValidUid(uids.sopInstanceUid) && isValidUid(uids.seriesInstanceUid)).toBe(true);
    expect(uids.seriesInstanceUid).not.toBe(input.seriesInstanceUid);

    const decoded = await decode(path);
    expect(decoded.status).toBe(0);
    expect(decoded.info).toMatchObject({ width: layout.columns, height: layout.rows });
    const px = (x: number, y: number) => {
      const i = (y * layout.columns + x) * decoded.info!.channels;
      return [decoded.data![i]!, decoded.data![i + 1]!, decoded.data![i + 2]!];
    };
    // The red banner, a grey crop pixel and a tinted heat-map pixel at the blob's centre.
    expect(px(4, 4)).toEqual([176, 0, 32]);
    const crop = layout.knees[0]!;
    const tileTop = layout.top + 64;
    const [r, g, b] = px(crop.left + TILE / 2, tileTop + TILE / 4);
    expect(r).toBe(g);
    expect(g).toBe(b);
    const [hr, , hb] = px(crop.left + TILE + TILE / 2, tileTop + Math.round((15.5 / 28) * TILE));
    expect(hr! - hb!).toBeGreaterThan(60);
  });

  it("blends the heat map over the crop pixel for pixel: opacity 0.6 × heat, blue → cyan → yellow → red", async () => {
    const input = await fixtureWithImages();
    const path = await tempFile("sc.dcm", await writeSecondaryCapture(input));
    const decoded = await decode(path);
    expect(decoded.status).toBe(0);
    const layout = secondaryCaptureLayout(input);
    const channels = decoded.info!.channels;
    const col = layout.knees[0]!;
    const tileTop = layout.top + 64;
    const knee = orderedKnees(input.knees)[0]!.knee;
    // The heat map as the capture scales it (a tile of 448 px, cubic).
    const heat = await sharp(knee.heatmapPng!)
      .greyscale()
      .resize(TILE, TILE, { fit: "fill", kernel: "cubic" })
      .toColourspace("b-w")
      .raw()
      .toBuffer();
    const stops = [
      [0, 0, 0, 160],
      [0.35, 0, 190, 230],
      [0.65, 250, 230, 0],
      [1, 230, 20, 0],
    ] as const;
    const colour = (t: number) => {
      const i = stops.findIndex((s) => t <= s[0]);
      if (i <= 0) return [0, 0, 160];
      const [t0, ...c0] = stops[i - 1]!;
      const [t1, ...c1] = stops[i]!;
      const f = (t - t0) / (t1 - t0);
      return c0.map((c, k) => c + f * (c1[k]! - c));
    };
    let compared = 0;
    let heated = 0;
    // Every 7th pixel of the tile above its caption bar.
    for (let y = 0; y < TILE - 28; y += 7) {
      for (let x = 0; x < TILE; x += 7) {
        const at = (px: number) => ((tileTop + y) * layout.columns + px) * channels;
        const grey = decoded.data![at(col.left + x)]!;
        const h = heat[y * TILE + x]!;
        const a = 0.6 * (h / 255);
        const expected = colour(h / 255).map((c) => Math.round((1 - a) * grey + a * c));
        const o = at(col.left + TILE + x);
        expect([decoded.data![o], decoded.data![o + 1], decoded.data![o + 2]]).toEqual(expected);
        compared++;
        if (h > 128) heated++;
      }
    }
    expect(compared).toBeGreaterThan(3000);
    expect(heated).toBeGreaterThan(20);
  });

  it("is deterministic: the same input gives the same bytes", async () => {
    const a = await writeSecondaryCapture(await fixtureWithImages());
    const b = await writeSecondaryCapture(await fixtureWithImages());
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });

  it("says so in a yellow banner when the model is a test model, and names the series", async () => {
    const withImages = await fixtureWithImages({
      algorithm: { ...fixture().algorithm, modelStatus: "smoke" },
    });
    const input = { ...withImages, knees: withImages.knees.slice(0, 1) };
    const path = await tempFile("sc.dcm", await writeSecondaryCapture(input));
    expect(dciodvfy(path).errors).toEqual([]);
    const layout = secondaryCaptureLayout(input);
    const ds = pydicomRead(path);
    expect(ds.SeriesDescription).toBe("TEST MODEL – NOT FOR CLINICAL USE – AI images (kneegrade)");
    expect(ds).toMatchObject({ Rows: layout.rows, Columns: layout.columns });
    const decoded = await decode(path);
    expect(decoded.status).toBe(0);
    const i = (70 * layout.columns + 4) * decoded.info!.channels; // inside the test-model banner
    expect([decoded.data![i], decoded.data![i + 1], decoded.data![i + 2]]).toEqual([255, 212, 0]);
  });

  it("writes a plain panel saying why when no knee was graded", async () => {
    const input = fixture({
      knees: [],
      ungraded: [
        {
          source: image(2),
          code: "NO_KNEE_FOUND",
          reason: "no knee joint found (best knee score 0.31 < 0.45)",
        },
      ],
    });
    const path = await tempFile("sc.dcm", await writeSecondaryCapture(input));
    expect(dciodvfy(path).errors).toEqual([]);
    const layout = secondaryCaptureLayout(input);
    const decoded = await decode(path);
    expect(decoded.status).toBe(0);
    expect(decoded.info).toMatchObject({ width: layout.columns, height: layout.rows });
    expect(layout.columns).toBe(2 * TILE + 32);
  });

  it("draws a knee without a heat map as one tile, and without a crop as a labelled gap", async () => {
    const { heatmapPng: _, ...cropOnly } = (await fixtureWithImages()).knees[0]!;
    const input = fixture({ knees: [cropOnly, fixture().knees[1]!] });
    const layout = secondaryCaptureLayout(input);
    expect(layout.knees.map((k) => k.tiles)).toEqual([1, 1]);
    // Never narrower than two tiles (the banner must fit), even for one knee without a heat map.
    expect(secondaryCaptureLayout(fixture({ knees: [cropOnly] })).columns).toBe(2 * TILE + 32);
    const path = await tempFile("sc.dcm", await writeSecondaryCapture(input));
    expect(dciodvfy(path).errors).toEqual([]);
    expect((await decode(path)).status).toBe(0);
  });
});
