/**
 * What the localiser must not grade, on images made from real crops: rotated knees and a
 * foot. (Known gaps, measured and listed in docs/GRADING.md: an upside-down knee and a
 * lateral-like, edge-on knee can still pass the template check.)
 */
import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { SHARED_DATA } from "../../../tests/helpers/paths.ts";
import { composeBilateral, drawFoot } from "../../../tests/helpers/radiographs.ts";
import { findKnees } from "./find.ts";

const VAL = `${SHARED_DATA}knee-kl/val/`;
const crop = (grade: number, i: number) =>
  `${VAL}${grade}/${readdirSync(`${VAL}${grade}`).sort()[i]}`;

describe("refusals", () => {
  it("refuses knees rotated by 90° or 45° (not an AP/PA knee as the crops are)", async () => {
    for (const rotateDeg of [90, 45]) {
      for (const k of [0, 1]) {
        const r = await composeBilateral([crop(k, 5 + k), crop(k + 1, 5)], k, { rotateDeg });
        const found = await findKnees(
          {
            width: r.width,
            height: r.height,
            data: Uint8Array.from(r.stored, (v) => v >> 4),
            spacingMm: 0.15,
          },
          {},
          64,
        );
        expect(found, `rotated ${rotateDeg}°, image ${k}`).toMatchObject({
          ok: false,
          code: "NO_KNEE_FOUND",
        });
      }
    }
  });

  it("refuses a foot, with and without a pixel spacing", async () => {
    for (const spacingMm of [0.15, null]) {
      const found = await findKnees({ ...drawFoot(1), spacingMm }, {}, 64);
      expect(found).toMatchObject({ ok: false, code: "NO_KNEE_FOUND" });
      if (!found.ok) expect(found.reason).toMatch(/^no knee joint found \(best knee score/);
    }
  });
});
