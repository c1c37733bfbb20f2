/**
 * The real clinical radiographs of `../shared/data/realdx-dev` (archive exports: JPEG DX, no view,
 * laterality or spacing) graded as `kneegrade grade` grades them, against their truth: how many
 * knees a grader must report (0: refuse — lateral and foot/ankle views).
 */
import { existsSync, readFileSync } from "node:fs";
import { createLogger } from "@kneegrade/log";
import { SHARED_DATA } from "@kneegrade/sample-radiographs";
import { gradeFiles, openModel } from "../../packages/cli/src/grade.ts";

export const REALDX_DIR = `${SHARED_DATA}realdx-dev/`;
export const realdxPresent = () => existsSync(`${REALDX_DIR}truth.json`);

export interface RealdxRow {
  file: string;
  view: string;
  expected: number;
  /** Knees reported: graded, or found and not graded (arthroplasty). */
  found: number;
  /** Of those, found and not graded (arthroplasty): none of the dev set has a prosthesis. */
  notGraded: number;
  ok: boolean;
  outcome: string;
  reason: string;
  scores: number[];
}

export interface RealdxTotals {
  apRight: number;
  ap: number;
  refusedRight: number;
  refusals: number;
}

export async function gradeRealdx(
  modelDir: string,
): Promise<{ rows: RealdxRow[]; totals: RealdxTotals }> {
  const truth = JSON.parse(readFileSync(`${REALDX_DIR}truth.json`, "utf8")) as Record<
    string,
    { knees: number; view: string }
  >;
  const files = Object.keys(truth).sort();
  const { predictor, close } = await openModel(
    { modelDir, providers: ["cpu"], threads: 1, maxBatch: 4, allowTestModel: true },
    createLogger("realdx", "silent"),
  );
  try {
    const graded = await gradeFiles(
      files.map((f) => `${REALDX_DIR}${f}`),
      predictor,
    );
    const rows = graded.map((g, i) => {
      const t = truth[files[i]!]!;
      const found = g.knees.length + g.notGraded.length;
      return {
        file: files[i]!,
        view: t.view,
        expected: t.knees,
        found,
        notGraded: g.notGraded.length,
        ok: found === t.knees,
        outcome: g.outcome,
        reason: g.reason ?? "",
        scores: [...g.knees, ...g.notGraded].map((k) => k.localisationScore ?? Number.NaN),
      };
    });
    const ap = rows.filter((r) => r.expected > 0);
    const refusals = rows.filter((r) => r.expected === 0);
    return {
      rows,
      totals: {
        apRight: ap.filter((r) => r.ok).length,
        ap: ap.length,
        refusedRight: refusals.filter((r) => r.ok).length,
        refusals: refusals.length,
      },
    };
  } finally {
    await close();
  }
}
