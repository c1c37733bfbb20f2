/**
 * `npm run bench:knees`: how many real knees the two-stage localiser reports (template match, then
 * the verifier), on bilateral radiographs composed from real val crops of every grade (two knees
 * per image, 2,400 × 2,000 px at 0.15 mm, as `composeBilateral`). Prints, per KL grade, the share
 * of knees reported, and for the knees that were not: whether the template stage missed them or
 * the verifier refused them. A quality measurement of the localiser, not of the grade.
 *
 *   npx tsx tests/bench/knee-acceptance.bench.ts [--images 50] [--no-spacing]
 */
import { readdirSync } from "node:fs";
import { parseArgs } from "node:util";
import { closeLocaliserThread, findKnees } from "@kneegrade/knee";
import { readRadiographFile } from "@kneegrade/pixels";
import { composeBilateral, radiographDicom, SHARED_DATA } from "@kneegrade/sample-radiographs";

const { values } = parseArgs({
  options: {
    images: { type: "string", default: "50" },
    // Localise as for an export without PixelSpacing: sizes relative to the image.
    "no-spacing": { type: "boolean", default: false },
  },
});
const images = Number(values.images);
const VAL = `${SHARED_DATA}knee-kl/val/`;
const byGrade = [0, 1, 2, 3, 4].map((g) =>
  readdirSync(`${VAL}${g}`)
    .sort()
    .map((f) => ({ grade: g, path: `${VAL}${g}/${f}` })),
);
// Knees of every grade in turn, different crops each time (deterministic).
const knees = Array.from({ length: images * 2 }, (_, i) => {
  const list = byGrade[i % 5]!;
  return list[Math.floor(i / 5) % list.length]!;
});

const stats = [0, 1, 2, 3, 4].map(() => ({ knees: 0, reported: 0 }));
let verifierRefused = 0;
let templateMissed = 0;
const refusedImages: string[] = [];
const started = Date.now();
for (let i = 0; i < images; i++) {
  const pair = [knees[2 * i]!, knees[2 * i + 1]!] as const;
  const r = await composeBilateral([pair[0].path, pair[1].path], i);
  const { header, radiograph } = await readRadiographFile(radiographDicom(r));
  const found = await findKnees(
    {
      width: radiograph.width,
      height: radiograph.height,
      data: radiograph.display,
      spacingMm: radiograph.spacing && !values["no-spacing"] ? radiograph.spacing.rowMm : null,
    },
    header,
    112,
  );
  // Which composed knee each reported one is: the left half of the image holds pair[0].
  const reportedSides = new Set<number>(
    found.ok ? found.knees.map((k) => (k.box.cx < radiograph.width / 2 ? 0 : 1)) : [],
  );
  for (const [side, knee] of pair.entries()) {
    stats[knee.grade]!.knees += 1;
    if (reportedSides.has(side)) stats[knee.grade]!.reported += 1;
  }
  const missing = 2 - reportedSides.size;
  if (missing > 0) {
    const refusedByVerifier = found.ok
      ? found.warnings.some((w) => w.includes("not taken for a knee by the verifier"))
      : /verifier/.test(found.reason);
    if (refusedByVerifier) verifierRefused += found.ok ? 1 : missing;
    else templateMissed += missing;
    refusedImages.push(
      `image ${i} (KL${pair[0].grade} ${pair[0].path.split("/").pop()}, KL${pair[1].grade} ${pair[1].path.split("/").pop()}): ${found.ok ? found.warnings.join("; ") : found.reason}`,
    );
  }
}
await closeLocaliserThread();
const total = stats.reduce((a, s) => ({
  knees: a.knees + s.knees,
  reported: a.reported + s.reported,
}));
console.log(
  `Knees reported on ${images} composed bilateral radiographs (${total.knees} real val knees${values["no-spacing"] ? ", pixel spacing withheld" : ""}), ${((Date.now() - started) / 1000).toFixed(0)} s:`,
);
console.log("| KL | knees | reported | share |");
console.log("| --- | --- | --- | --- |");
for (const [g, s] of stats.entries()) {
  console.log(`| ${g} | ${s.knees} | ${s.reported} | ${(s.reported / s.knees).toFixed(3)} |`);
}
console.log(
  `| all | ${total.knees} | ${total.reported} | ${(total.reported / total.knees).toFixed(3)} |`,
);
console.log(
  `not reported: ${templateMissed} missed by the template stage, ${verifierRefused} refused by the verifier`,
);
for (const line of refusedImages) console.log(`- ${line}`);
process.exit(0);
