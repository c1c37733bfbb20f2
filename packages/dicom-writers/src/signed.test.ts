import { describe, expect, it } from "vitest";
import { writeComprehensiveSr } from "./sr.ts";
import { dciodvfy, fixture, run, signedRevision, tempFile } from "./test-support.ts";
import type { Signature } from "./types.ts";

const EXPECTED_WARNING = /Unrecognized defined term <99KNEEGRADE>/;

const signed = (overrides: Partial<Signature> = {}) => signedRevision(fixture(), overrides);

describe("a signed SR revision", () => {
  it("is VERIFIED, names the verifying observer and its predecessor, and keeps the AI's grades as the AI's", async () => {
    const input = signed();
    const path = await tempFile("signed-sr.dcm", writeComprehensiveSr(input));
    const check = dciodvfy(path);
    expect(check.errors).toEqual([]);
    expect(check.warnings.filter((w) => !EXPECTED_WARNING.test(w))).toEqual([]);
    const out = run("dsrdump", ["+Pl", "+U8", path]).out;
    expect(out).toContain("Verification Flag   : VERIFIED");
    expect(out).toContain("Verifying Observers : 2026-12-01 09:30:05");
    expect(out).toContain("Doe^Jane, Test Hospital Radiology");
    expect(out).toContain("Predecessor Docs    : 1");
    const predecessor = run("dcmdump", ["+P", "0040,a360", path]).out;
    expect(predecessor).toContain(`[${input.signature!.predecessor.sopInstanceUid}]`);
    expect(out).toContain('"Tracking Identifier")="right knee, AI result"');
    expect(out).toContain('"Tracking Identifier")="right knee, radiologist"');
    expect(out).toContain('"Person Observer Name")="Doe^Jane"');
    // The radiologist's findings, then the AI's (unchanged, with its algorithm and probabilities).
    const findings = [...out.matchAll(/"Finding"\)=\((\w+),99KNEEGRADE,"([^"]+)"\)/g)].map(
      (m) => `${m[1]} ${m[2]}`,
    );
    expect(findings).toEqual([
      "KL3R Right knee, Kellgren-Lawrence grade 3 (moderate)",
      "AIKL3R AI result: right knee, Kellgren-Lawrence grade 3 (moderate)",
      "NOTGRADABLEL Left knee, not gradable (Kellgren-Lawrence)",
      "AIKL1L AI result: left knee, Kellgren-Lawrence grade 1 (doubtful)",
    ]);
    expect(out.match(/"Algorithm Name"\)=/g)).toHaveLength(2);
    expect(out.match(/"Probability"\)=/g)).toHaveLength(10);
    // Every group on its knee's region, so that viewers draw the radiologist's grade there too.
    expect(out.match(/<contains SCOORD:\(,,"Image Region"\)/g)).toHaveLength(4);
    expect(out).not.toContain("AI-generated, unverified");
    expect(out).toContain("Left knee: not gradable (rotated, joint space not seen).");
  });

  it("refuses a signature that does not decide every knee, or a not-gradable knee without a reason", () => {
    expect(() => writeComprehensiveSr(signed({ knees: [{ grade: 1 }] }))).toThrow(
      /one decision per knee/,
    );
    expect(() =>
      writeComprehensiveSr(
        signed({ knees: [{ grade: 1 }, { grade: null, notGradableReason: " " }] }),
      ),
    ).toThrow(/needs a reason/);
    expect(() => writeComprehensiveSr(signed({ knees: [{ grade: 5 }, { grade: 0 }] }))).toThrow(
      /out of range/,
    );
  });
});
