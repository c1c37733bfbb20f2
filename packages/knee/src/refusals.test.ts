/**
 * What the localiser must not grade, on images made from real crops: rotated and upside-down
 * knees, and a foot. Template matching alone refuses some of them by thin margins and grades
 * upside-down knees; the verifier (verify.ts) refuses those as "not an AP/PA knee view".
 */
import { readdirSync } from "node:fs";
import { composeBilateral, drawFoot } from "@kneegrade/sample-radiographs";
import { describe, expect, it } from "vitest";
import { SHARED_DATA } from "../../../tests/helpers/paths.ts";
import { findKnees } from "./find.ts";

const VAL = `${SHARED_DATA}knee-kl/val/`;
const crop = (grade: number, i: number) =>
  `${VAL}${grade}/${readdirSync(`${VAL}${grade}`).sort()[i]}`;

/** findKnees on a composed radiograph's display grey, no header. */
const findIn = (r: Awaited<ReturnType<typeof composeBilateral>>) =>
  findKnees(
    {
      width: r.width,
      height: r.height,
      data: Uint8Array.from(r.stored, (v) => v >> 4),
      spacingMm: r.spacingMm,
    },
    {},
    64,
  );

describe("refusals", () => {
  it("refuses knees rotated by 90° or 45° (not an AP/PA knee as the crops are)", async () => {
    for (const rotateDeg of [90, 45]) {
      for (const k of [0, 1]) {
        const r = await composeBilateral([crop(k, 5 + k), crop(k + 1, 5)], k, { rotateDeg });
        const found = await findIn(r);
        expect(found, `rotated ${rotateDeg}°, image ${k}`).toMatchObject({
          ok: false,
          code: "NO_KNEE_FOUND",
        });
      }
    }
  });

  it("refuses upside-down knees, as not an AP/PA knee view when the template matched", async () => {
    const codes: string[] = [];
    for (const k of [0, 1, 2]) {
      const r = await composeBilateral([crop(k, 5 + k), crop(k + 1, 5)], k, { rotateDeg: 180 });
      const found = await findIn(r);
      expect(found.ok, `image ${k}`).toBe(false);
      if (found.ok) continue;
      codes.push(found.code);
      if (found.bestScore !== null && found.bestScore >= 0.45) {
        expect(found).toMatchObject({ code: "NOT_AP_VIEW" });
        expect(found.reason).toMatch(/^not an AP\/PA knee view/);
      }
    }
    // Without the verifier two of these three were graded (knee scores 0.46 and 0.56).
    expect(codes).toContain("NOT_AP_VIEW");
  });

  it("refuses a foot, with and without a pixel spacing", async () => {
    for (const spacingMm of [0.15, null]) {
      const found = await findKnees({ ...drawFoot(1), spacingMm }, {}, 64);
      expect(found).toMatchObject({ ok: false, code: "NO_KNEE_FOUND" });
      if (!found.ok) expect(found.reason).toMatch(/^no knee joint found \(best knee score/);
    }
  });
});
