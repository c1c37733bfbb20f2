import { describe, expect, it } from "vitest";
import { clampHeader, readRadiographHeader } from "./header.ts";
import { clampAttribute, clampToVr, truncateUtf8 } from "./limits.ts";
import { encodeFileMetaInformation } from "./part10.ts";

/** 70 characters: over the 64 a PN component group may hold. */
const LONG_NAME = "Quixotebrandtfeld-Oyelaran^Wilhelmina Perpetua Anastasia^Maria^Dr.^Jr.";

describe("clampToVr", () => {
  it("truncates an over-long Person Name to 64 bytes per component group, keeping its start", () => {
    const { value, fix } = clampToVr("PN", LONG_NAME);
    expect(Buffer.byteLength(value!, "utf8")).toBeLessThanOrEqual(64);
    expect(LONG_NAME.startsWith(value!)).toBe(true);
    expect(value).toMatch(/^Quixotebrandtfeld-Oyelaran\^Wilhelmina/);
    expect(value).not.toMatch(/[\s^]$/);
    expect(fix).toEqual({ action: "truncated", rule: "PN: at most 64 bytes per component group" });
    // Each group on its own: an ideographic group does not shorten the alphabetic one.
    const ideographic = `${"Yamada^Tarou"}=${"山".repeat(30)}^太郎`;
    const clamped = clampToVr("PN", ideographic).value!;
    const [alphabetic, kanji] = clamped.split("=");
    expect(alphabetic).toBe("Yamada^Tarou");
    expect(Buffer.byteLength(kanji!, "utf8")).toBeLessThanOrEqual(64);
    expect(kanji).toBe("山".repeat(21)); // 63 bytes: a character is never cut
    expect(clampToVr("PN", "A=B=C=D").value).toBe("A=B=C");
    expect(clampToVr("PN", "A^B^C^D^E^F").value).toBe("A^B^C^D^E");
  });

  it("truncates LO, SH, CS to their maximum length and leaves values within it alone", () => {
    expect(clampToVr("LO", "P".repeat(80))).toEqual({
      value: "P".repeat(64),
      fix: { action: "truncated", rule: "LO: at most 64 bytes" },
    });
    expect(clampToVr("SH", "ACCESSION-NUMBER-TOO-LONG-123").value).toBe("ACCESSION-NUMBER");
    expect(clampToVr("SH", "ACC 123456789012 ").value).toBe("ACC 123456789012");
    expect(clampToVr("CS", "MALEMALEMALEMALEMALE").value).toBe("MALEMALEMALEMALE");
    expect(clampToVr("CS", "L\\F")).toEqual({ value: "L\\F" });
    expect(clampToVr("LO", "Müller")).toEqual({ value: "Müller" });
    expect(truncateUtf8("aü", 2)).toBe("a");
  });

  it("keeps a valid date and time and drops a malformed one", () => {
    expect(clampToVr("DA", "20261127")).toEqual({ value: "20261127" });
    expect(clampToVr("DA", "20240229")).toEqual({ value: "20240229" });
    for (const bad of [
      "2026112712",
      "2026-11-27",
      "2026.11.27",
      "2026112",
      "20230229",
      "20261301",
    ]) {
      expect(clampToVr("DA", bad), bad).toEqual({
        value: undefined,
        fix: { action: "dropped", rule: "DA: a calendar date YYYYMMDD" },
      });
    }
    for (const good of ["10", "1015", "101500", "101500.123456", "235960"]) {
      expect(clampToVr("TM", good), good).toEqual({ value: good });
    }
    for (const bad of ["10:15:00", "1015001234567891234", "246000", "101500.1234567", "1015.5"]) {
      expect(clampToVr("TM", bad).value, bad).toBeUndefined();
    }
  });

  it("drops a malformed number or UID, which a prefix would falsify", () => {
    expect(clampToVr("UI", `1.${"2".repeat(63)}`).value).toBeUndefined();
    expect(clampToVr("UI", "1.2.840.10008.1.2.1")).toEqual({ value: "1.2.840.10008.1.2.1" });
    expect(clampToVr("DS", "0.15\\0.15")).toEqual({ value: "0.15\\0.15" });
    expect(clampToVr("DS", "1234567890.12345678").value).toBeUndefined();
    expect(clampToVr("IS", "12")).toEqual({ value: "12" });
    expect(clampToVr("IS", "1.5").value).toBeUndefined();
    expect(clampToVr("AS", "045Y")).toEqual({ value: "045Y" });
    expect(clampToVr("AS", "45 years").value).toBeUndefined();
  });

  it("says which attribute and rule, never the value", () => {
    const { value, note } = clampAttribute("PatientName", LONG_NAME);
    expect(value).toBeDefined();
    expect(note).toEqual({
      tag: "(0010,0010)",
      keyword: "PatientName",
      vr: "PN",
      action: "truncated",
      rule: "PN: at most 64 bytes per component group",
    });
    expect(JSON.stringify(note)).not.toMatch(/Quixote|Wilhelmina/);
    expect(clampAttribute("StudyDate", "20261127")).toEqual({ value: "20261127" });
    expect(clampAttribute("StudyDate", undefined)).toEqual({ value: undefined });
  });
});

/** An element in explicit VR little endian (short form: 2-byte length). */
function element(group: number, elem: number, vr: string, value: Buffer): Buffer {
  const padded = value.length % 2 ? Buffer.concat([value, Buffer.from(" ")]) : value;
  const head = Buffer.alloc(8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(elem, 2);
  head.write(vr, 4, "latin1");
  head.writeUInt16LE(padded.length, 6);
  return Buffer.concat([head, padded]);
}

describe("readRadiographHeader + clampHeader", () => {
  const sopClass = "1.2.840.10008.5.1.4.1.1.1";
  const sop = "1.2.826.0.1.3680043.8.498.77";
  /** A small data set (explicit VR little endian, ascending tags) with a hostile identity. */
  const file = (name: string) =>
    Buffer.concat([
      encodeFileMetaInformation({
        mediaStorageSopClassUid: sopClass,
        mediaStorageSopInstanceUid: sop,
        transferSyntaxUid: "1.2.840.10008.1.2.1",
      }),
      element(0x0008, 0x0005, "CS", Buffer.from("ISO_IR 192")),
      element(0x0008, 0x0016, "UI", Buffer.from(`${sopClass}\0`)),
      element(0x0008, 0x0018, "UI", Buffer.from(sop)),
      element(0x0008, 0x0020, "DA", Buffer.from("2026112712")),
      element(0x0008, 0x0050, "SH", Buffer.from("ACCESSION-NUMBER-TOO-LONG-123")),
      element(0x0008, 0x0060, "CS", Buffer.from("DX")),
      element(0x0010, 0x0010, "PN", Buffer.from(name, "utf8")),
      element(0x0010, 0x0020, "LO", Buffer.from("P".repeat(80))),
      element(0x0020, 0x000d, "UI", Buffer.from("1.2.826.0.1.3680043.8.498.78")),
      element(0x0020, 0x000e, "UI", Buffer.from("1.2.826.0.1.3680043.8.498.79")),
    ]);

  it("reads the patient's name in its character set and stores it within the limits", () => {
    const name = LONG_NAME.replace("Oyelaran", "Øyelaran");
    const header = readRadiographHeader(file(name), true);
    expect(header.patientName).toBe(name);
    expect(header.patientId).toBe("P".repeat(80));
    expect(header.studyDate).toBe("2026112712");
    const { header: stored, notes } = clampHeader(header);
    expect(stored.patientName).toMatch(/^Quixotebrandtfeld-Øyelaran\^Wilhelmina/);
    expect(Buffer.byteLength(stored.patientName!, "utf8")).toBeLessThanOrEqual(64);
    expect(stored.patientId).toBe("P".repeat(64));
    expect(stored.accessionNumber).toBe("ACCESSION-NUMBER");
    expect("studyDate" in stored).toBe(false);
    expect(stored).toMatchObject({ sopInstanceUid: sop, modality: "DX" });
    expect(notes.map((n) => `${n.tag} ${n.action}`).sort()).toEqual([
      "(0008,0020) dropped",
      "(0008,0050) truncated",
      "(0010,0010) truncated",
      "(0010,0020) truncated",
    ]);
    expect(JSON.stringify(notes)).not.toMatch(/Quixote|PPPP|ACCESSION|2026112712/);
    // Within the limits: nothing to say, nothing changed.
    const fine = clampHeader(readRadiographHeader(file("Doe^Jane"), true));
    expect(fine.header.patientName).toBe("Doe^Jane");
    expect(fine.notes.map((n) => n.keyword)).not.toContain("PatientName");
  });
});
