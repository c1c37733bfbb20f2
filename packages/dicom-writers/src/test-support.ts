/** Test-only helpers for this package's tests (not exported from the package). */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { signedReportLines } from "./text.ts";
import type { KneeFinding, ReportInput, Signature, SourceImage } from "./types.ts";

export const PYTHON = "/usr/bin/python3";
const VAL_CROP = "/work/shared/data/knee-kl/val/3/9023348L.png";

export const image = (n: number, series = "1.2.826.0.1.3680043.8.498.2"): SourceImage => ({
  sopClassUid: "1.2.840.10008.5.1.4.1.1.1.1",
  sopInstanceUid: `1.2.826.0.1.3680043.8.498.3.${n}`,
  seriesInstanceUid: series,
});

/** A 224-px knee crop: a real val crop when the data set is there, else a synthetic one. */
export async function cropPng(): Promise<Uint8Array> {
  if (existsSync(VAL_CROP)) return new Uint8Array(await readFile(VAL_CROP));
  const px = Uint8Array.from({ length: 224 * 224 }, (_, i) => {
    const y = Math.floor(i / 224);
    return Math.abs(y - 112) < 6 ? 40 : 170 + ((i * 7) % 40);
  });
  return new Uint8Array(
    await sharp(px, { raw: { width: 224, height: 224, channels: 1 } })
      .toColourspace("b-w")
      .png()
      .toBuffer(),
  );
}

/** A grey heat map (28 px, a blob over the joint). */
export async function heatmapPng(): Promise<Uint8Array> {
  const px = Uint8Array.from({ length: 28 * 28 }, (_, i) => {
    const x = i % 28;
    const y = Math.floor(i / 28);
    return Math.round(255 * Math.exp(-((x - 14) ** 2 + (y - 15) ** 2) / 40));
  });
  return new Uint8Array(
    await sharp(px, { raw: { width: 28, height: 28, channels: 1 } })
      .toColourspace("b-w")
      .png()
      .toBuffer(),
  );
}

/** A knee of the fixture's AP image, graded by its most probable grade. */
function knee(
  laterality: "R" | "L",
  probabilities: number[],
  localisationScore: number,
  { x, y, side }: { x: number; y: number; side: number },
): KneeFinding {
  return {
    laterality,
    lateralitySource: "image side and PatientOrientation (L\\F)",
    grade: probabilities.indexOf(Math.max(...probabilities)),
    probabilities,
    localisationScore,
    lowConfidence: false,
    source: image(1),
    region: { x, y, width: side, height: side },
  };
}

/** A realistic bilateral result: two knees in one AP image, probabilities summing to 1. */
export function fixture(overrides: Partial<ReportInput> = {}): ReportInput {
  const knees = [
    knee("R", [0.02, 0.05, 0.12, 0.71, 0.1], 0.74, { x: 412, y: 1630, side: 690 }),
    knee("L", [0.25, 0.48, 0.2, 0.05, 0.02], 0.68, { x: 1490, y: 1640, side: 680 }),
  ];
  return {
    context: {
      studyInstanceUid: "1.2.826.0.1.3680043.8.498.1",
      patientName: "Müller^Jörg",
      patientId: "PAT-0042",
      issuerOfPatientId: "HOSP",
      patientBirthDate: "19560312",
      patientSex: "M",
      studyDate: "20261127",
      studyTime: "101500",
      studyId: "4711",
      accessionNumber: "ACC-2026-1",
      referringPhysicianName: "Weiß^Anna^^Dr.",
      studyDescription: "XR KNEE BILATERAL AP",
    },
    knees,
    ungraded: [],
    warnings: [],
    algorithm: {
      name: "kneegrade PIM ensemble (Kellgren-Lawrence)",
      version: "release-0123456789ab",
      modelFingerprint: "9f2c".repeat(3),
      modelStatus: "release",
      manufacturer: "kneegrade",
      softwareVersion: "0.1.0",
    },
    seriesInstanceUid: "2.25.123456789012345678901234567890123456",
    sopInstanceUid: "2.25.223456789012345678901234567890123456",
    seriesNumber: 991,
    instanceNumber: 1,
    contentDateTime: new Date(2026, 10, 27, 10, 42, 7),
    deviceObserverUid: "2.25.323456789012345678901234567890123456",
    institutionName: "Klinikum Süd",
    ...overrides,
  };
}

/** The fixture with its left knee a knee arthroplasty, found but not graded. */
export function withArthroplasty(input: ReportInput): ReportInput {
  const [right, left] = input.knees;
  return {
    ...input,
    knees: [right!],
    notGraded: [
      {
        laterality: "L",
        lateralitySource: left!.lateralitySource,
        code: "ARTHROPLASTY",
        reason: "knee arthroplasty — not graded",
        localisationScore: 0.52,
        source: left!.source,
        region: left!.region,
      },
    ],
  };
}

/** The fixture with crops and heat maps on both knees. */
export async function fixtureWithImages(
  overrides: Partial<ReportInput> = {},
): Promise<ReportInput> {
  const input = fixture(overrides);
  const crop = await cropPng();
  const heat = await heatmapPng();
  return { ...input, knees: input.knees.map((k) => ({ ...k, cropPng: crop, heatmapPng: heat })) };
}

export async function tempFile(name: string, bytes: Uint8Array): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "kneegrade-reports-"));
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

export function run(cmd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** dciodvfy's lines, and those that are errors. */
export function dciodvfy(path: string): { lines: string[]; errors: string[]; warnings: string[] } {
  const lines = run("dciodvfy", [path])
    .out.split("\n")
    .filter((l) => l.trim() !== "");
  return {
    lines,
    errors: lines.filter((l) => l.startsWith("Error")),
    warnings: lines.filter((l) => l.startsWith("Warning")),
  };
}

/** Parses a file with pydicom and returns the named attributes (strings), plus a few sequences. */
export function pydicomRead(path: string): Record<string, unknown> {
  const script = `
import json, sys, pydicom
d = pydicom.dcmread(sys.argv[1])
out = {}
for k in ["SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
          "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "StudyDate",
          "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
          "Modality", "SeriesNumber", "InstanceNumber", "SeriesDescription", "CompletionFlag",
          "CompletionFlagDescription", "VerificationFlag", "ContentDate", "ContentTime",
          "InstitutionName", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
          "BurnedInAnnotation", "ConversionType", "BitsAllocated"]:
    if k in d:
        v = d.get(k)
        out[k] = None if v is None else (str(v) if not isinstance(v, (int, float)) else v)
out["TransferSyntaxUID"] = str(d.file_meta.TransferSyntaxUID)
out["codingSchemes"] = [str(i.CodingSchemeDesignator) for i in d.get("CodingSchemeIdentificationSequence", [])]
out["evidence"] = [str(s.ReferencedSOPInstanceUID) for e in d.get("CurrentRequestedProcedureEvidenceSequence", [])
                   for r in e.ReferencedSeriesSequence for s in r.ReferencedSOPSequence]
out["contributing"] = [[str(i.Manufacturer), str(i.get("ManufacturerModelName", "")),
                        str(i.PurposeOfReferenceCodeSequence[0].CodeValue)]
                       for i in d.get("ContributingEquipmentSequence", [])]
print(json.dumps(out))
`;
  const r = spawnSync(PYTHON, ["-c", script, path], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`pydicom failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/**
 * A radiologist's signed revision of `input` (the AI SR): the first knee confirmed, the second not
 * gradable; the signature's fields may be overridden.
 */
export function signedRevision(
  input: ReportInput = fixture(),
  overrides: Partial<Signature> = {},
): ReportInput {
  const decisions = [
    { grade: input.knees[0]!.grade },
    { grade: null, notGradableReason: "rotated, joint space not seen" },
  ];
  const lines = signedReportLines(input, decisions);
  return {
    ...input,
    sopInstanceUid: "2.25.1234",
    signature: {
      observerName: "Doe^Jane",
      organisation: "Test Hospital Radiology",
      dateTime: new Date(2026, 11, 1, 9, 30, 5),
      predecessor: {
        sopClassUid: "1.2.840.10008.5.1.4.1.1.88.33",
        sopInstanceUid: input.sopInstanceUid,
        seriesInstanceUid: input.seriesInstanceUid,
      },
      knees: decisions,
      findings: lines.findings,
      impression: lines.impression,
      ...overrides,
    },
  };
}
