import { readdirSync } from "node:fs";
import {
  composeRadiograph,
  IMPLANT_KINDS,
  type ImplantKind,
  onProsthesis,
} from "@kneegrade/sample-radiographs";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { SHARED_DATA } from "../../../tests/helpers/paths.ts";
import { detectArthroplasty } from "./arthroplasty.ts";
import { findKnees } from "./find.ts";

const VAL = `${SHARED_DATA}knee-kl/val/`;
const crops = (perGrade: number) =>
  [0, 1, 2, 3, 4].flatMap((g) =>
    readdirSync(`${VAL}${g}`)
      .sort()
      .slice(0, perGrade)
      .map((f) => `${VAL}${g}/${f}`),
  );
const grey = async (png: string) => new Uint8Array(await sharp(png).greyscale().raw().toBuffer());

/** The crop with a prosthesis drawn in at `metal` grey (bone is scaled to `boneMax` of 255). */
function withProsthesis(data: Uint8Array, boneMax: number, kind: ImplantKind = "total") {
  return Uint8Array.from(data, (v, i) =>
    onProsthesis((i % 224) / 224, Math.floor(i / 224) / 224, kind) ? 255 : Math.round(v * boneMax),
  );
}

describe("arthroplasty on real knee crops", () => {
  it("finds each kind of prosthesis drawn into real knees, and none in the knees themselves", async () => {
    for (const png of crops(6)) {
      const data = await grey(png);
      expect(detectArthroplasty({ width: 224, height: 224, data }).arthroplasty, png).toBe(false);
      for (const kind of IMPLANT_KINDS) {
        for (const boneMax of [0.8, 0.9]) {
          const found = detectArthroplasty({
            width: 224,
            height: 224,
            data: withProsthesis(data, boneMax, kind),
          });
          expect(found, `${png} ${kind} bone max ${boneMax}`).toMatchObject({ arthroplasty: true });
        }
      }
    }
  });

  it("finds them on a photographed film and a dim export too (metal far below white)", async () => {
    // A photographed film squeezes the grey range (here into 40–200) and blurs; a dim export
    // leaves metal at ≈ 225. Metal is then far below the 235 a plain export gives it.
    const looks = {
      photographed: (v: number) => 40 + (v * 160) / 255,
      dim: (v: number) => 20 + (v * 205) / 255,
    };
    const blur = async (x: Uint8Array) =>
      new Uint8Array(
        await sharp(Buffer.from(x), { raw: { width: 224, height: 224, channels: 1 } })
          .blur(1.2)
          .greyscale()
          .raw()
          .toBuffer(),
      );
    const pngs = crops(4);
    for (const [name, look] of Object.entries(looks)) {
      for (const png of pngs) {
        const data = await grey(png);
        const plain = await blur(Uint8Array.from(data, (v) => Math.round(look(v * 0.85))));
        expect(detectArthroplasty({ width: 224, height: 224, data: plain }).arthroplasty).toBe(
          false,
        );
      }
      for (const kind of IMPLANT_KINDS) {
        let found = 0;
        for (const png of pngs) {
          const data = withProsthesis(await grey(png), 0.85, kind);
          const x = await blur(Uint8Array.from(data, (v) => Math.round(look(v))));
          if (detectArthroplasty({ width: 224, height: 224, data: x }).arthroplasty) found++;
        }
        // Measured on 147 val crops: 81–100 % by kind (docs/GRADING.md).
        expect(found, `${name} ${kind}`).toBeGreaterThanOrEqual(0.75 * pngs.length);
      }
    }
  });

  it("tells fixation hardware below the joint (metal, gradable) from an arthroplasty", async () => {
    // A real val crop with a plate and screws in the proximal tibia (the only val crop with metal).
    const data = await grey(`${VAL}3/9375300L.png`);
    expect(detectArthroplasty({ width: 224, height: 224, data })).toMatchObject({
      metal: true,
      arthroplasty: false,
    });
  });
});

describe("arthroplasty in a full radiograph", () => {
  const val = (g: number, i: number) => `${VAL}${g}/${readdirSync(`${VAL}${g}`).sort()[i]}`;
  // Five pairs of real crops per kind; a prosthetic knee often scores below the pair threshold
  // (0.36–0.59 here), so this also checks that the mate square is taken for its metal.
  it.each(IMPLANT_KINDS)(
    "marks each knee with a %s prosthesis and leaves the other knee gradable",
    async (kind) => {
      for (const k of [0, 1, 2, 3, 4]) {
        const r = await composeRadiograph({
          widthMm: 360,
          heightMm: 300,
          spacingMm: 0.15,
          boneMax: k % 2 ? 0.9 : 0.8,
          seed: k,
          knees: [
            { png: val(k, 3 + k), xMm: 95, yMm: 150, sideMm: 90, implant: kind },
            { png: val((k + 2) % 5, 4), xMm: 265, yMm: 150, sideMm: 90 },
          ],
        });
        const found = await findKnees(
          {
            width: r.width,
            height: r.height,
            data: Uint8Array.from(r.stored, (v) => v >> 4),
            spacingMm: 0.15,
          },
          { patientOrientation: "L\\F" },
          64,
        );
        expect(found.ok, `${kind} pair ${k}`).toBe(true);
        if (!found.ok) return;
        // The image's left knee is the patient's right (L\F), the one with the prosthesis.
        expect(
          found.knees.map((x) => [x.laterality, x.arthroplasty]),
          `${kind} pair ${k}`,
        ).toEqual([
          ["R", true],
          ["L", false],
        ]);
      }
    },
  );
});
