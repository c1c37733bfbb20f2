import { describe, expect, it } from "vitest";
import { missingDecisionOf, missingFindingLine, missingKnees } from "./missing.ts";

const VERIFIER =
  "a second knee-like region was not taken for a knee by the verifier: one knee graded";
const grading = (
  o: {
    warnings?: string[];
    notGraded?: unknown[];
    imageLaterality?: string | null;
    outcome?: string;
  } = {},
) => ({
  instanceId: "i1",
  outcome: o.outcome ?? "GRADED",
  warnings: o.warnings ?? [],
  notGraded: o.notGraded ?? [],
  instance: { imageLaterality: o.imageLaterality ?? null },
});

describe("missingKnees: every knee the radiograph shows is accounted for", () => {
  it("a region the verifier refused is the other side of the knee that was graded", () => {
    const m = missingKnees({
      instances: [grading({ warnings: [VERIFIER] })],
      results: [{ instanceId: "i1", laterality: "LEFT" }],
    });
    expect(m).toEqual([
      expect.objectContaining({ key: "i1_R", laterality: "RIGHT", code: "NOT_VERIFIED" }),
    ]);
  });

  it("a bilateral view (ImageLaterality B) with one knee found misses the other", () => {
    const m = missingKnees({
      instances: [grading({ imageLaterality: " b " })],
      results: [{ instanceId: "i1", laterality: "RIGHT" }],
    });
    expect(m).toEqual([expect.objectContaining({ laterality: "LEFT", code: "NOT_FOUND" })]);
  });

  it("an arthroplasty is a knee without a grade; with it both knees of the view are found", () => {
    const m = missingKnees({
      instances: [
        grading({
          imageLaterality: "B",
          notGraded: [{ laterality: "LEFT", code: "ARTHROPLASTY", reason: "knee arthroplasty" }],
        }),
      ],
      results: [{ instanceId: "i1", laterality: "RIGHT" }],
    });
    expect(m).toEqual([
      expect.objectContaining({ key: "i1_L", laterality: "LEFT", code: "ARTHROPLASTY" }),
    ]);
  });

  it("nothing is missing from a single-knee view, a bilateral view with both knees, or a refused image", () => {
    expect(
      missingKnees({
        instances: [grading({ imageLaterality: "R" })],
        results: [{ instanceId: "i1", laterality: "RIGHT" }],
      }),
    ).toEqual([]);
    expect(
      missingKnees({
        instances: [grading({ imageLaterality: "B", warnings: [VERIFIER] })],
        results: [
          { instanceId: "i1", laterality: "RIGHT" },
          { instanceId: "i1", laterality: "LEFT" },
        ],
      }),
    ).toEqual([]);
    expect(
      missingKnees({
        instances: [grading({ outcome: "REFUSED", imageLaterality: "B" })],
        results: [],
      }),
    ).toEqual([]);
  });

  it("reads a decision from the form and words it for the findings", () => {
    const [m] = missingKnees({
      instances: [grading({ warnings: [VERIFIER] })],
      results: [{ instanceId: "i1", laterality: "LEFT" }],
    });
    expect(missingDecisionOf({}, m!.key)).toBeUndefined();
    expect(missingDecisionOf({ missing_i1_R: "7" }, m!.key)).toBe("invalid");
    expect(missingDecisionOf({ missing_i1_R: "np" }, m!.key)).toEqual({ decision: "NOT_PRESENT" });
    const ng = missingDecisionOf({ missing_i1_R: "ng", missing_reason_i1_R: " rotated " }, m!.key);
    expect(ng).toEqual({ decision: "NOT_GRADABLE", reason: "rotated" });
    expect(missingFindingLine(m!, { decision: "GRADED", grade: 0 })).toBe(
      "Right knee — not graded by the AI (a second knee-like region was not taken for a knee by the AI's verifier); radiologist: Kellgren–Lawrence grade 0 (no osteoarthritis).",
    );
  });
});
