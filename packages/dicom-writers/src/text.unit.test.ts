import { describe, expect, it } from "vitest";
import { seriesDescription } from "./sr-document.ts";
import { fixture, image } from "./test-support.ts";
import { reportLines, reportText, TEST_MODEL_NOTICE, UNVERIFIED_NOTICE } from "./text.ts";

describe("reportText", () => {
  it("writes one findings line per knee, right first, and an impression a radiologist would write", () => {
    const input = fixture();
    input.knees.reverse(); // left first in the input: the report still reads right, then left
    const { findings, impression } = reportText(input);
    expect(findings.split("\n")).toEqual([
      "Right knee: Kellgren–Lawrence grade 3 (moderate osteoarthritis), probability 71 %.",
      "Left knee: Kellgren–Lawrence grade 1 (doubtful osteoarthritis), probability 48 %.",
      UNVERIFIED_NOTICE,
    ]);
    expect(impression.split("\n")).toEqual([
      "Moderate osteoarthritis of the right knee (Kellgren–Lawrence grade 3); doubtful osteoarthritis of the left knee (Kellgren–Lawrence grade 1).",
      UNVERIFIED_NOTICE,
    ]);
    expect(findings).not.toContain("TEST MODEL");
  });

  it("says 'both knees' when both have the same grade, and words grades 0 and 4", () => {
    const input = fixture();
    for (const k of input.knees) k.grade = 4;
    expect(reportLines(input).impression[0]).toBe(
      "Severe osteoarthritis of both knees (Kellgren–Lawrence grade 4).",
    );
    for (const k of input.knees) k.grade = 0;
    expect(reportLines(input).impression[0]).toBe(
      "No radiographic osteoarthritis in either knee (Kellgren–Lawrence grade 0).",
    );
    const one = fixture({ knees: [{ ...fixture().knees[0]!, grade: 0 }] });
    expect(reportLines(one).findings[0]).toBe(
      "Right knee: Kellgren–Lawrence grade 0 (no osteoarthritis), probability 2 %.",
    );
    expect(reportLines(one).impression[0]).toBe(
      "No radiographic osteoarthritis of the right knee (Kellgren–Lawrence grade 0).",
    );
  });

  it("adds a line for an ungraded image, and mentions it in the impression", () => {
    const input = fixture({
      ungraded: [
        {
          source: image(2),
          code: "NO_KNEE_FOUND",
          reason: "no knee joint found (best knee score 0.31 < 0.45)",
        },
      ],
    });
    const { findings, impression } = reportLines(input);
    expect(findings).toContain(
      "One image could not be graded: no knee joint found (best knee score 0.31 < 0.45).",
    );
    expect(impression).toContain("One image could not be graded (see findings).");
    expect(findings.at(-1)).toBe(UNVERIFIED_NOTICE);
  });

  it("numbers several ungraded images, words a code without a reason, and handles no knee at all", () => {
    const input = fixture({
      knees: [],
      ungraded: [
        { source: image(2), code: "NOT_AP_VIEW", reason: "" },
        { source: image(3), code: "NO_KNEE_FOUND", reason: "No knee joint found." },
      ],
    });
    const { findings, impression } = reportLines(input);
    expect(findings.slice(0, 2)).toEqual([
      "Image 1 of the 2 images not graded: not an AP/PA knee view.",
      "Image 2 of the 2 images not graded: no knee joint found.",
    ]);
    expect(impression[0]).toBe("No knee could be graded by the AI (see findings).");
    expect(reportLines(fixture({ knees: [] })).findings[0]).toBe("No knee was graded.");
  });

  it("flags low localisation confidence and assumed or unknown sides", () => {
    const base = fixture();
    const input = fixture({
      knees: [
        { ...base.knees[0]!, lowConfidence: true, localisationScore: 0.523 },
        {
          ...base.knees[1]!,
          lateralitySource:
            "image side, assuming the AP display convention (no PatientOrientation)",
        },
      ],
      warnings: [
        "knee R: low localisation confidence (score 0.52)",
        "knee L: laterality assumed (image side, assuming the AP display convention)",
        "ImageLaterality says R but two knees were found: sides taken from their positions",
      ],
    });
    const { findings, impression } = reportLines(input);
    expect(findings).toContain(
      "Right knee: the knee joint was located with low confidence (localisation score 0.52); check the graded region before relying on this grade.",
    );
    expect(findings).toContain(
      "Left knee: side assumed (image side, assuming the AP display convention (no PatientOrientation)); check the side marker.",
    );
    // The pipeline's own warnings for the same facts are not repeated; others are kept.
    expect(findings.filter((l) => l.includes("low localisation confidence"))).toHaveLength(0);
    expect(findings).toContain(
      "Note: ImageLaterality says R but two knees were found: sides taken from their positions.",
    );
    expect(impression).toContain("Check the caveats in the findings.");

    const unknown = fixture({
      knees: [
        { ...base.knees[0]!, laterality: "U", lateralitySource: "no laterality in the header" },
      ],
    });
    const u = reportLines(unknown);
    expect(u.findings[0]).toMatch(/^Knee \(side not determined\): Kellgren–Lawrence grade 3/);
    expect(u.findings[1]).toBe(
      "Knee (side not determined): the side could not be determined from the image (no laterality in the header); check the side marker.",
    );
    expect(u.impression[0]).toContain("of the knee (side not determined)");
  });

  it("says clearly that a smoke model is a test model, in the text and the series description", () => {
    const input = fixture({ algorithm: { ...fixture().algorithm, modelStatus: "smoke" } });
    const { findings, impression } = reportText(input);
    expect(findings).toContain(`${TEST_MODEL_NOTICE}: these results come from a test model`);
    expect(impression).toContain(`${TEST_MODEL_NOTICE}.`);
    expect(impression.split("\n").at(-1)).toBe(UNVERIFIED_NOTICE);
    expect(seriesDescription(input, "report")).toBe(
      "TEST MODEL – NOT FOR CLINICAL USE – AI result (kneegrade)",
    );
    expect(seriesDescription(input, "images")).toContain("NOT FOR CLINICAL USE");
    expect(seriesDescription(fixture(), "report")).toBe("AI result (kneegrade) – requires review");
  });

  it("labels two knees of the same side apart", () => {
    const base = fixture();
    const input = fixture({
      knees: [base.knees[0]!, { ...base.knees[0]!, grade: 2, source: image(5) }],
    });
    const { findings } = reportLines(input);
    expect(findings[0]).toMatch(/^Right knee, finding 1: .*grade 3/);
    expect(findings[1]).toMatch(/^Right knee, finding 2: .*grade 2/);
  });
});

describe("a knee arthroplasty", () => {
  const arthroplasty = (): NonNullable<ReturnType<typeof fixture>["notGraded"]>[number] => ({
    laterality: "L",
    lateralitySource: "image side and PatientOrientation (L\\F)",
    code: "ARTHROPLASTY",
    reason: "knee arthroplasty — not graded",
    localisationScore: 0.52,
    source: image(1),
    region: { x: 1490, y: 1640, width: 680, height: 680 },
  });

  it("is reported without a grade, beside the other knee's grade", () => {
    const input = fixture({ knees: [fixture().knees[0]!], notGraded: [arthroplasty()] });
    const { findings, impression } = reportLines(input);
    expect(findings).toEqual([
      "Right knee: Kellgren–Lawrence grade 3 (moderate osteoarthritis), probability 71 %.",
      "Left knee: knee arthroplasty — not graded.",
      UNVERIFIED_NOTICE,
    ]);
    expect(impression).toEqual([
      "Moderate osteoarthritis of the right knee (Kellgren–Lawrence grade 3).",
      "Left knee: knee arthroplasty — not graded.",
      UNVERIFIED_NOTICE,
    ]);
    expect([...findings, ...impression].join("\n")).not.toMatch(/left knee \(Kellgren/i);
  });

  it("is the whole report when it is the only knee, not 'no knee was graded'", () => {
    const input = fixture({ knees: [], notGraded: [arthroplasty()] });
    const { findings, impression } = reportLines(input);
    expect(findings).toEqual(["Left knee: knee arthroplasty — not graded.", UNVERIFIED_NOTICE]);
    expect(impression).toEqual(["Left knee: knee arthroplasty — not graded.", UNVERIFIED_NOTICE]);
  });
});
