import { expect, it } from "vitest";
import { confusionSvg, reliabilitySvg } from "./charts.ts";
import { evaluationMetrics, reliabilityBins } from "./metrics.ts";

it("draws the confusion matrix: every count, row-normalised shading, title and axes", () => {
  const m = evaluationMetrics([0, 0, 1, 2, 4], [0, 1, 1, 2, 2]);
  const svg = confusionSvg(m, "ensemble, model <v1> & co");
  expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  expect(svg).toContain("accuracy 0.600  QWK 0.648");
  expect(svg).toContain("true (rows) / predicted (cols)");
  expect(svg).toContain("ensemble, model &lt;v1&gt; &amp; co");
  expect(svg.match(/<rect /g)).toHaveLength(1 + 25);
  // Row KL1 is all in one cell: the darkest shade, white count; an empty row stays white.
  expect(svg).toContain('fill="rgb(215,135,55)"');
  expect(svg).toContain('fill="#ffffff" text-anchor="middle">1</text>');
});

it("draws a bar per non-empty reliability bin, the diagonal, accuracy and ECE", () => {
  const probs = [
    [0.9, 0.05, 0.05, 0, 0],
    [0.1, 0.6, 0.1, 0.1, 0.1],
    [0.2, 0.2, 0.55, 0.05, 0],
  ];
  const svg = reliabilitySvg(
    { accuracy: 2 / 3, ece: 0.1234, reliability: reliabilityBins(probs, [0, 2, 2]) },
    "ensemble",
  );
  expect(svg).toContain("accuracy 0.667  ECE 0.123");
  expect(svg).toContain("confidence (x) / accuracy (y)");
  expect(svg.match(/<rect /g)).toHaveLength(1 + 1 + 2); // background, frame, two bars
  expect(svg.match(/<line /g)).toHaveLength(1);
});
