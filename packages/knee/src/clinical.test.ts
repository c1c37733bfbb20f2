/**
 * Knees found on radiographs composed as a department sends them (both legs, raw contrast,
 * collimation, burned-in side markers: CLINICAL_LOOK), the demo's studies among them.
 */
import { readdirSync } from "node:fs";
import { composeClinicalBilateral, demoCrops } from "@kneegrade/sample-radiographs";
import { describe, expect, it } from "vitest";
import { SHARED_DATA } from "../../../tests/helpers/paths.ts";
import { findKnees } from "./find.ts";

const VAL = `${SHARED_DATA}knee-kl/val`;
const pick = (g: number, i: number) => `${VAL}/${g}/${readdirSync(`${VAL}/${g}`).sort()[i]}`;

async function kneesIn(crops: [string, string], seed: number) {
  const r = await composeClinicalBilateral(crops, seed);
  const found = await findKnees(
    {
      width: r.width,
      height: r.height,
      data: Uint8Array.from(r.stored, (v) => v >> 4),
      spacingMm: r.spacingMm,
    },
    { patientOrientation: "L\\F" },
    64,
  );
  if (!found.ok) return found.reason;
  return found.knees.map((k) => {
    const t = r.truth[k.laterality === "R" ? 0 : 1]!;
    const offMm = Math.hypot(k.box.cx - t.cx, k.box.cy - t.cy) * r.spacingMm;
    return `${k.laterality}${offMm < 10 ? "" : ` ${offMm.toFixed(0)} mm off`}`;
  });
}

describe("knees on clinical-looking radiographs", () => {
  it("finds both knees of each of the demo's studies", async () => {
    for (const [n, crops] of demoCrops(VAL).entries()) {
      expect(await kneesIn(crops, n), `demo study ${n + 1}`).toEqual(["R", "L"]);
    }
  }, 120_000);

  it("finds both knees, each within 10 mm, on twelve more pairs of every grade", async () => {
    for (let k = 0; k < 12; k++) {
      const crops: [string, string] = [pick(k % 5, 10 + k), pick((k + 2) % 5, 12 + k)];
      expect(await kneesIn(crops, k), `pair ${k}`).toEqual(["R", "L"]);
    }
  }, 300_000);
});
