import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RadiographHeader } from "@kneegrade/dicom";
import { describe, expect, it } from "vitest";
import { DEFAULT_ROUTING_RULES, loadRoutingRules, routeInstance } from "./routing.ts";

const header = (h: Partial<RadiographHeader>): RadiographHeader => ({
  sopClassUid: "1.2.840.10008.5.1.4.1.1.1",
  sopInstanceUid: "1.2.3.1",
  studyInstanceUid: "1.2.3",
  seriesInstanceUid: "1.2.3.4",
  transferSyntaxUid: "1.2.840.10008.1.2.1",
  hasPixelData: true,
  ...h,
});

describe("routeInstance with the default rules", () => {
  it.each([
    [{ bodyPartExamined: "KNEE" }, "rule body-part (bodyPartExamined)"],
    [{ bodyPartExamined: "knie" }, "rule body-part (bodyPartExamined)"],
    [{ studyDescription: "XR KNEE BILAT STANDING" }, "rule study-description (studyDescription)"],
    [{ seriesDescription: "Genou G face" }, "rule series-description (seriesDescription)"],
    [{ protocolName: "Knees AP weight-bearing" }, "rule protocol (protocolName)"],
  ])("routes %o to grading", (h, reason) => {
    expect(routeInstance(header(h), DEFAULT_ROUTING_RULES)).toEqual({ decision: "KNEE", reason });
  });

  it.each([
    [{ bodyPartExamined: "CHEST" }, "no knee rule matched"],
    [{ studyDescription: "XR ANKLE" }, "no knee rule matched"],
    [{ bodyPartExamined: "KNEE", hasPixelData: false }, "no pixel data"],
    [
      { bodyPartExamined: "KNEE", seriesDescription: "Patella skyline" },
      "excluded by rule patellar-axial-view (seriesDescription)",
    ],
  ])("skips %o", (h, reason) => {
    expect(routeInstance(header(h), DEFAULT_ROUTING_RULES)).toEqual({
      decision: "NOT_KNEE",
      reason,
    });
  });

  it("does not match knee inside other words", () => {
    expect(
      routeInstance(header({ studyDescription: "KNEELING VIEW FOOT" }), DEFAULT_ROUTING_RULES)
        .decision,
    ).toBe("NOT_KNEE");
  });
});

describe("loadRoutingRules", () => {
  const dir = mkdtempSync(join(tmpdir(), "kneegrade-rules-"));

  it("loads a hospital's own rules", () => {
    const path = join(dir, "rules.json");
    writeFileSync(
      path,
      JSON.stringify({
        knee: [{ name: "local-code", attribute: "studyDescription", pattern: "^RXGEN01$" }],
      }),
    );
    const rules = loadRoutingRules(path);
    expect(routeInstance(header({ studyDescription: "rxgen01" }), rules).decision).toBe("KNEE");
    expect(routeInstance(header({ bodyPartExamined: "KNEE" }), rules).decision).toBe("NOT_KNEE");
  });

  it("names the file and the offending rule when the rules are invalid", () => {
    const path = join(dir, "bad.json");
    writeFileSync(
      path,
      JSON.stringify({ knee: [{ name: "x", attribute: "PatientName", pattern: "(" }] }),
    );
    expect(() => loadRoutingRules(path)).toThrow(/bad\.json: knee\.0\.attribute.*knee\.0\.pattern/);
  });

  it("uses the defaults when no file is configured", () => {
    expect(loadRoutingRules(undefined)).toBe(DEFAULT_ROUTING_RULES);
  });
});
