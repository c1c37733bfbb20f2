/**
 * `npm run bench:realdx`: the real clinical radiographs of `../shared/data/realdx-dev` graded as
 * `kneegrade grade` grades them (the shipped model, MODEL_DIR or --model-dir): per image the
 * knees expected and reported, with the outcome and reason, then the totals — AP/PA images with
 * the right number of knees, lateral and foot/ankle images refused.
 *
 *   npx tsx tests/bench/realdx.bench.ts [--model-dir models/dist]
 */
import { parseArgs } from "node:util";
import { closeLocaliserThread } from "@kneegrade/knee";
import { gradeRealdx, REALDX_DIR, realdxPresent } from "../helpers/realdx.ts";

const { values } = parseArgs({
  options: { "model-dir": { type: "string", default: process.env.MODEL_DIR ?? "models/dist" } },
});
if (!realdxPresent()) {
  console.error(
    `bench:realdx: ${REALDX_DIR} not found (the shared data set is not beside the project)`,
  );
  process.exit(2);
}
const started = Date.now();
const { rows, totals } = await gradeRealdx(values["model-dir"]!);
await closeLocaliserThread();
console.log("file                view        expected  found  result   scores      reason");
for (const r of rows) {
  console.log(
    `${r.file.padEnd(19)} ${r.view.padEnd(11)} ${String(r.expected).padStart(8)}  ${String(r.found).padStart(5)}  ${(r.ok ? "ok" : "WRONG").padEnd(7)}  ${r.scores
      .map((s) => s.toFixed(2))
      .join(" ")
      .padEnd(10)}  ${r.reason}`,
  );
}
console.log(
  `\nAP/PA images with the right number of knees: ${totals.apRight} / ${totals.ap}; ` +
    `lateral and foot/ankle images refused: ${totals.refusedRight} / ${totals.refusals} ` +
    `(${((Date.now() - started) / 1000).toFixed(1)} s)`,
);
