import { readdirSync } from "node:fs";
import sharp, { type Sharp } from "sharp";
import { describe, expect, it } from "vitest";
import { SHARED_DATA } from "../../../tests/helpers/paths.ts";
import { verifyKneeCrops } from "./verify.ts";

const VAL = `${SHARED_DATA}knee-kl/val/`;
/** Val crops (never seen in training), 5 per grade. */
const crops = () =>
  [0, 1, 2, 3, 4].flatMap((g) =>
    readdirSync(`${VAL}${g}`)
      .sort()
      .slice(10, 15)
      .map((f) => `${VAL}${g}/${f}`),
  );
const grey = async (img: Sharp) => new Uint8Array(await img.greyscale().raw().toBuffer());

describe("the knee verifier on held-out real crops", () => {
  it("takes AP knee crops for knees, and the same crops turned or cut away from the joint for not", async () => {
    const files = crops();
    const knees = await verifyKneeCrops(await Promise.all(files.map((f) => grey(sharp(f)))));
    expect(knees.every((v) => v.apKnee >= 0.5)).toBe(true);
    const upsideDown = await verifyKneeCrops(
      await Promise.all(files.map((f) => grey(sharp(f).flip()))),
    );
    const turned = await verifyKneeCrops(
      await Promise.all(files.map((f) => grey(sharp(f).rotate(90)))),
    );
    for (const v of [...upsideDown, ...turned]) {
      expect(v.apKnee).toBeLessThan(0.5);
      expect(v.notApView).toBeGreaterThan(v.noKneeJoint);
    }
    // The femoral shaft alone: the top third of a crop, enlarged to a crop's size.
    const shafts = await verifyKneeCrops(
      await Promise.all(
        files.map(async (f) =>
          grey(
            sharp(
              await sharp(f)
                .extract({ left: 56, top: 0, width: 112, height: 80 })
                .resize(224, 224)
                .png()
                .toBuffer(),
            ),
          ),
        ),
      ),
    );
    const refused = shafts.filter((v) => v.apKnee < 0.5).length;
    expect(refused / shafts.length).toBeGreaterThanOrEqual(0.9);
  });
});
