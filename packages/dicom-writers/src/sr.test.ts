import { describe, expect, it } from "vitest";
import { readStudyContext } from "./context.ts";
import { writeBasicTextSr, writeComprehensiveSr } from "./sr.ts";
import {
  dciodvfy,
  fixture,
  image,
  pydicomRead,
  run,
  tempFile,
  withArthroplasty,
} from "./test-support.ts";
import { reportLines, UNVERIFIED_NOTICE } from "./text.ts";
import { derivedUids, isValidUid } from "./uids.ts";

/** dsrdump with long values in full; its output and exit status. */
function dsrdump(path: string) {
  return run("dsrdump", ["+Pl", "+U8", path]);
}

/** dciodvfy warnings that come from the private coding scheme (expected, see README). */
const EXPECTED_WARNING = /Unrecognized defined term <99KNEEGRADE>/;

describe("writeComprehensiveSr", () => {
  it("writes a TID 1500 SR that dciodvfy accepts and dsrdump shows", async () => {
    const input = fixture({
      ungraded: [
        {
          source: image(2),
          code: "NO_KNEE_FOUND",
          reason: "no knee joint found (best knee score 0.31 < 0.45)",
        },
      ],
    });
    const path = await tempFile("sr.dcm", writeComprehensiveSr(input));

    const check = dciodvfy(path);
    expect(check.lines[0]).toBe("ComprehensiveSR");
    expect(check.errors).toEqual([]);
    expect(check.warnings.filter((w) => !EXPECTED_WARNING.test(w))).toEqual([]);

    const dump = dsrdump(path);
    expect(dump.status).toBe(0);
    const out = dump.out;
    expect(out).toContain("Comprehensive SR Document");
    expect(out).toContain('<CONTAINER:(,,"Imaging Measurement Report")=SEPARATE>');
    expect(out).toContain('(121007,DCM,"Device")');
    expect(out).toContain(`"Device Observer UID")="${input.deviceObserverUid}"`);
    expect(out).toContain('"Tracking Identifier")="right knee"');
    expect(out).toContain('"Tracking Identifier")="left knee"');
    expect(out).toContain('"Finding Site")=(49076000,SCT,"Knee joint")');
    expect(out).toContain('"Laterality")=(24028007,SCT,"Right")');
    expect(out).toContain('"Laterality")=(7771000,SCT,"Left")');
    // Each knee's grade is its Finding (TID 1410/1501), side and observer pre-coordinated.
    expect(out).toContain(
      '<contains CODE:(,,"Finding")=(AIKL3R,99KNEEGRADE,"AI result: right knee, Kellgren-Lawrence grade 3 (moderate)")>',
    );
    expect(out).toContain(
      '<contains CODE:(,,"Finding")=(AIKL1L,99KNEEGRADE,"AI result: left knee, Kellgren-Lawrence grade 1 (doubtful)")>',
    );
    expect(out.match(/"Finding"\)=/g)).toHaveLength(2);
    // Five probabilities per knee, each qualified by the grade it is for.
    expect(out).toContain('<contains NUM:(,,"Probability")="0.71" (1,UCUM,"no units")>');
    expect(out).toContain(
      '<has concept mod CODE:(,,"Kellgren-Lawrence grade")=(KL3,99KNEEGRADE,"Kellgren-Lawrence grade 3 (moderate)")>',
    );
    expect(out.match(/"Probability"\)=/g)).toHaveLength(10);
    expect(out).toContain('"Algorithm Name")="kneegrade PIM ensemble (Kellgren-Lawrence)"');
    expect(out).toContain(
      `"Algorithm Parameters")="model fingerprint ${input.algorithm.modelFingerprint} (sha256 over the members' sha256, first 12 hex digits)"`,
    );
    expect(out).toContain('<contains SCOORD:(,,"Image Region")=(POLYLINE,412/1630');
    // The first measurement (the localisation score) is inferred from that region (TID 300/320),
    // where viewers built on Cornerstone's SR adapters (OHIF) take a measurement's coordinates.
    expect(out).toMatch(
      /<contains NUM:\(,,"Knee localisation score"\)="0.74" \(1,UCUM,"no units"\)>\s+<inferred from SCOORD:=\(POLYLINE,412\/1630,1102\/1630,1102\/2320,412\/2320,412\/1630\)>\s+<selected from IMAGE:/,
    );
    // TID 4019 in its row order: name, version, parameters, family.
    const rows = [
      "Algorithm Name",
      "Algorithm Version",
      "Algorithm Parameters",
      "Algorithm Family",
    ];
    const at = rows.map((r) => out.indexOf(`"${r}")=`));
    expect(at.every((i) => i > 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(out).toContain("Verification Flag   : UNVERIFIED");
    expect(out).toContain("Completion Flag     : PARTIAL");
    expect(out).toContain("Patient             : Müller^Jörg");
    // The report text, every line (CR LF between lines in the TEXT value).
    for (const line of [...reportLines(input).findings, ...reportLines(input).impression]) {
      expect(out).toContain(line);
    }
    expect(out).toContain("One image could not be graded: no knee joint found");
    expect(out).toContain(UNVERIFIED_NOTICE);

    const ds = pydicomRead(path);
    expect(ds).toMatchObject({
      TransferSyntaxUID: "1.2.840.10008.1.2.1",
      SpecificCharacterSet: "ISO_IR 192",
      SOPClassUID: "1.2.840.10008.5.1.4.1.1.88.33",
      SOPInstanceUID: input.sopInstanceUid,
      SeriesInstanceUID: input.seriesInstanceUid,
      StudyInstanceUID: input.context.studyInstanceUid,
      PatientID: "PAT-0042",
      PatientName: "Müller^Jörg",
      IssuerOfPatientID: "HOSP",
      PatientBirthDate: "19560312",
      AccessionNumber: "ACC-2026-1",
      ReferringPhysicianName: "Weiß^Anna^^Dr.",
      StudyDate: "20261127",
      Modality: "SR",
      SeriesNumber: 991,
      InstanceNumber: 1,
      SeriesDescription: "AI result (kneegrade) – requires review",
      VerificationFlag: "UNVERIFIED",
      CompletionFlag: "PARTIAL",
      CompletionFlagDescription: "1 image not graded",
      ContentDate: "20261127",
      ContentTime: "104207",
      InstitutionName: "Klinikum Süd",
    });
    expect(ds.codingSchemes).toEqual([
      "DCM",
      "SCT",
      "LN",
      "UCUM",
      "UMLS",
      "RFC5646",
      "99KNEEGRADE",
    ]);
    expect(ds.evidence).toEqual([image(1).sopInstanceUid, image(2).sopInstanceUid]);
    expect(ds.contributing).toEqual([
      ["kneegrade", "kneegrade PIM ensemble (Kellgren-Lawrence)", "109102"],
    ]);
  });

  it("is COMPLETE when every image was graded, and uses the Source of Measurement without a region", async () => {
    const input = fixture();
    input.knees[1]!.region = null;
    const path = await tempFile("sr.dcm", writeComprehensiveSr(input));
    expect(dciodvfy(path).errors).toEqual([]);
    const out = dsrdump(path).out;
    expect(out).toContain("Completion Flag     : COMPLETE");
    expect(out).toContain('<contains IMAGE:(,,"Source of Measurement")=(DX image,)>');
    expect(out.match(/<contains SCOORD/g)).toHaveLength(1);
  });

  it("omits the laterality modifier for a knee of unknown side, and writes a study with no knee", async () => {
    const base = fixture();
    const unknown = fixture({ knees: [{ ...base.knees[0]!, laterality: "U" }] });
    const path = await tempFile("sr.dcm", writeComprehensiveSr(unknown));
    expect(dciodvfy(path).errors).toEqual([]);
    const out = dsrdump(path).out;
    expect(out).toContain('"Tracking Identifier")="knee (side not determined)"');
    expect(out).not.toContain('"Laterality")');

    const none = fixture({
      knees: [],
      ungraded: [
        {
          source: image(4),
          code: "NOT_AP_VIEW",
          reason: "ViewPosition LL: only AP/PA knee views are graded",
        },
      ],
    });
    const nonePath = await tempFile("sr.dcm", writeComprehensiveSr(none));
    expect(dciodvfy(nonePath).errors).toEqual([]);
    const noneOut = dsrdump(nonePath);
    expect(noneOut.status).toBe(0);
    expect(noneOut.out).toContain("ViewPosition LL: only AP/PA knee views are graded");
  });

  it("does not reference an image whose series is unknown (its header is gone)", async () => {
    const base = fixture();
    const input = fixture({
      knees: [
        base.knees[0]!,
        { ...base.knees[1]!, source: { ...image(8), seriesInstanceUid: "" } },
      ],
      ungraded: [
        { source: { ...image(9), seriesInstanceUid: "" }, code: "FAILED", reason: "unreadable" },
      ],
    });
    const path = await tempFile("sr.dcm", writeComprehensiveSr(input));
    expect(dciodvfy(path).errors).toEqual([]);
    expect(pydicomRead(path).evidence).toEqual([image(1).sopInstanceUid]);
    const out = dsrdump(path).out;
    // The library, and the right knee's region (the group's SCOORD and its first NUM's).
    expect(out.match(/IMAGE:/g)).toHaveLength(3);
    expect(out).toContain('"Tracking Identifier")="left knee"');
  });

  it("reports a knee arthroplasty as a finding without a grade, the other knee graded", async () => {
    const input = withArthroplasty(fixture());
    const path = await tempFile("sr-tka.dcm", writeComprehensiveSr(input));
    const check = dciodvfy(path);
    expect(check.errors).toEqual([]);
    expect(check.warnings.filter((w) => !EXPECTED_WARNING.test(w))).toEqual([]);
    const out = dsrdump(path).out;
    expect(out).toContain('"Tracking Identifier")="left knee"');
    expect(out).toContain(
      '"Finding")=(ARTHROPLASTYL,99KNEEGRADE,"Left knee, knee arthroplasty — not graded")',
    );
    expect(out).toContain("Completion Flag     : PARTIAL");
    expect(out).toContain("1 knee not graded (arthroplasty)");
    // One KL grade (the right knee's) and its five probabilities: none for the prosthesis.
    expect(out.match(/"Finding"\)=\(AIKL/g)).toHaveLength(1);
    expect(out.match(/"Probability"\)=/g)).toHaveLength(5);
    expect(out).toContain('"Laterality")=(7771000,SCT,"Left")');
  });

  it("is deterministic: the same input gives the same bytes", () => {
    const a = writeComprehensiveSr(fixture());
    const b = writeComprehensiveSr(fixture());
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const c = writeComprehensiveSr(fixture({ sopInstanceUid: "2.25.1" }));
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
  });

  it("can be read back with readStudyContext (as the reporter does)", () => {
    const input = fixture();
    const { context, image: self } = readStudyContext(writeComprehensiveSr(input));
    expect(self).toEqual({
      sopClassUid: "1.2.840.10008.5.1.4.1.1.88.33",
      sopInstanceUid: input.sopInstanceUid,
      seriesInstanceUid: input.seriesInstanceUid,
    });
    expect(context).toEqual(input.context);
  });

  it("refuses a grade or probabilities out of range", () => {
    const bad = fixture();
    bad.knees[0]!.grade = 5;
    expect(() => writeComprehensiveSr(bad)).toThrow(/grade out of range/);
    const short = fixture();
    short.knees[0]!.probabilities = [0.5, 0.5];
    expect(() => writeComprehensiveSr(short)).toThrow(/5 probabilities/);
  });
});

describe("writeBasicTextSr", () => {
  it("writes the report text for dictation systems, in the same study and series", async () => {
    const input = fixture({ algorithm: { ...fixture().algorithm, modelStatus: "smoke" } });
    const bytes = writeBasicTextSr(input);
    const path = await tempFile("text-sr.dcm", bytes);
    const check = dciodvfy(path);
    expect(check.lines[0]).toBe("BasicTextSR");
    expect(check.errors).toEqual([]);
    expect(check.warnings).toEqual([]);

    const dump = dsrdump(path);
    expect(dump.status).toBe(0);
    expect(dump.out).toContain("Basic Text SR Document");
    expect(dump.out).toContain('<CONTAINER:(,,"Diagnostic Imaging Report")=SEPARATE>');
    expect(dump.out).toContain("Verification Flag   : UNVERIFIED");
    const lines = reportLines(input);
    for (const line of lines.findings)
      expect(dump.out).toContain(`<contains TEXT:(,,"Finding")="${line}">`);
    for (const line of lines.impression) {
      expect(dump.out).toContain(`<contains TEXT:(,,"Impression")="${line}">`);
    }
    expect(dump.out).toContain("TEST MODEL – NOT FOR CLINICAL USE");

    const uids = derivedUids(input).basicTextSr;
    expect(isValidUid(uids.sopInstanceUid)).toBe(true);
    expect(uids.sopInstanceUid).not.toBe(input.sopInstanceUid);
    const ds = pydicomRead(path);
    expect(ds).toMatchObject({
      SOPClassUID: "1.2.840.10008.5.1.4.1.1.88.11",
      SOPInstanceUID: uids.sopInstanceUid,
      SeriesInstanceUID: input.seriesInstanceUid,
      StudyInstanceUID: input.context.studyInstanceUid,
      PatientID: "PAT-0042",
      PatientName: "Müller^Jörg",
      Modality: "SR",
      InstanceNumber: 2,
      VerificationFlag: "UNVERIFIED",
      CompletionFlag: "COMPLETE",
      SeriesDescription: "TEST MODEL – NOT FOR CLINICAL USE – AI result (kneegrade)",
    });
    expect(ds.codingSchemes).toEqual(["DCM", "LN", "RFC5646"]);
    // Deterministic.
    expect(Buffer.from(writeBasicTextSr(input)).equals(Buffer.from(bytes))).toBe(true);
  });
});
