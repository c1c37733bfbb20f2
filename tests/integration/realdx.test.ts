/**
 * Real clinical radiographs (../shared/data/realdx-dev: archive JPEG exports of AP/PA, bilateral,
 * lateral and foot/ankle views, no view, laterality or spacing in the header) graded with the
 * shipped model as `kneegrade grade` grades them: AP/PA images must give the right number of
 * knees, lateral and foot/ankle images must be refused. `npm run bench:realdx` prints the table.
 */
import { closeLocaliserThread } from "@kneegrade/knee";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../helpers/paths.ts";
import { gradeRealdx, REALDX_DIR, realdxPresent } from "../helpers/realdx.ts";

describe.skipIf(!realdxPresent())(`real clinical radiographs (${REALDX_DIR})`, () => {
  afterAll(() => closeLocaliserThread());

  it("finds the knees of the AP/PA images and refuses the lateral and foot/ankle ones", async () => {
    const { rows, totals } = await gradeRealdx(`${REPO_ROOT}models/dist`);
    const wrong = rows
      .filter((r) => !r.ok)
      .map((r) => `${r.file} (${r.view}): ${r.found} of ${r.expected}`);
    // Every AP/PA image gives the right number of knees; at most one lateral or foot/ankle image
    // may get through (docs/GRADING.md has the table).
    expect(totals.ap).toBe(11);
    expect(totals.apRight, wrong.join("; ")).toBe(11);
    expect(totals.refusals).toBe(13);
    expect(totals.refusedRight, wrong.join("; ")).toBeGreaterThanOrEqual(12);
    // No knee of the dev set has a prosthesis: none may be reported as one (and left ungraded).
    expect(rows.filter((r) => r.notGraded > 0).map((r) => r.file)).toEqual([]);
    // Every refusal names its reason.
    for (const r of rows.filter((x) => x.found === 0)) {
      expect(r.outcome, r.file).toBe("REFUSED");
      expect(r.reason, r.file).toMatch(/no knee joint found|not an AP\/PA knee view/);
    }
  }, 300_000);
});

if (!realdxPresent()) {
  console.warn(`SKIPPED: ${REALDX_DIR} not found — the real clinical radiographs were not graded`);
}
