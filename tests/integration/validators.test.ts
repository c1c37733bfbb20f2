/**
 * What kneegrade writes, held to two validators: dicom3tools' dciodvfy (the IOD: its
 * modules, attributes, VRs and enumerated values) and pixelmed's DicomSRValidator (the SR content
 * tree against its templates, TID 1500 and those it includes, and the order of their rows). The
 * objects come from the product's own writers, with the report fixtures' non-ASCII names.
 *
 * Errors fail the test, and so does any pixelmed warning on the Comprehensive SRs: their content
 * trees follow the templates row by row. dciodvfy's warnings are listed with their reasons in
 * packages/dicom-writers/README.md ("Validation"). pixelmed has no rules for the Secondary Capture IOD
 * (it says "IOD (SOP Class) unrecognized"): dciodvfy alone validates the SC, and the test says so
 * rather than count pixelmed's silence as a pass.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type ReportInput,
  writeBasicTextSr,
  writeComprehensiveSr,
  writeSecondaryCapture,
} from "@kneegrade/dicom-writers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  fixture,
  fixtureWithImages,
  signedRevision,
  withArthroplasty,
} from "../../packages/dicom-writers/src/test-support.ts";
import { dciodvfyErrors } from "../helpers/dcmtk.ts";
import { type PixelmedVerdict, pixelmedSr } from "../helpers/pixelmed.ts";

/** The radiologist's signed revision of the fixture's AI SR, signed by a name beyond ASCII. */
const signed = (input: ReportInput) =>
  signedRevision(input, {
    observerName: "Müller-Weiß^Jürgen",
    organisation: "Klinikum Süd Radiologie",
  });

describe("dciodvfy and pixelmed on what kneegrade writes", () => {
  let dir: string;
  const files: Record<string, string> = {};
  /** pixelmed's verdicts, run side by side: each JVM takes 15–35 s here. */
  let pixelmed: Record<string, PixelmedVerdict> = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kneegrade-validators-"));
    const input = await fixtureWithImages();
    const objects: Record<string, Uint8Array> = {
      "AI SR": writeComprehensiveSr(input),
      "signed SR revision": writeComprehensiveSr(signed(input)),
      "AI SR with a knee arthroplasty": writeComprehensiveSr(withArthroplasty(input)),
      "Basic Text SR": writeBasicTextSr(fixture()),
      "Secondary Capture": await writeSecondaryCapture(input),
    };
    for (const [name, bytes] of Object.entries(objects)) {
      files[name] = join(dir, `${name.replace(/\W+/g, "-")}.dcm`);
      await writeFile(files[name]!, bytes);
    }
    const names = Object.keys(files);
    const verdicts = await Promise.all(names.map((n) => pixelmedSr(files[n]!)));
    pixelmed = Object.fromEntries(names.map((n, i) => [n, verdicts[i]!]));
  }, 300_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const name of [
    "AI SR",
    "signed SR revision",
    "AI SR with a knee arthroplasty",
    "Basic Text SR",
    "Secondary Capture",
  ]) {
    it(`finds no error in the ${name} (dciodvfy)`, async () => {
      expect(await dciodvfyErrors(files[name]!)).toEqual([]);
    });
  }

  for (const name of ["AI SR", "signed SR revision", "AI SR with a knee arthroplasty"]) {
    it(`finds no error and no warning in the ${name}'s content tree against TID 1500 (pixelmed)`, () => {
      const verdict = pixelmed[name]!;
      expect(verdict.iod).toBe("ComprehensiveSR");
      expect(verdict.rootTemplate).toBe("TID_1500");
      expect(verdict.errors).toEqual([]);
      expect(verdict.warnings).toEqual([]);
    });
  }

  it("finds no error in the Basic Text SR (pixelmed; it has no root template to check)", () => {
    const verdict = pixelmed["Basic Text SR"]!;
    expect(verdict.iod).toBe("BasicTextSR");
    expect(verdict.errors).toEqual([]);
  });

  it("is told by pixelmed that it has no rules for the Secondary Capture (dciodvfy validates it)", () => {
    const verdict = pixelmed["Secondary Capture"]!;
    expect(verdict.lines).toContain("IOD (SOP Class) unrecognized");
    expect(verdict.iod).toBeUndefined();
    expect(verdict.errors).toEqual([]);
  });
});
