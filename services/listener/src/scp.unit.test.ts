import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ASSOCIATION_REJECT as RJ, TRANSFER_SYNTAXES as TS } from "@kneegrade/dicom";
import { describe, expect, it } from "vitest";
import { associationRejection, chooseTransferSyntax } from "./association.ts";
import { WholeFileReader } from "./scp.ts";

describe("chooseTransferSyntax", () => {
  it("keeps a compressed image compressed when the peer proposes that first", () => {
    expect(chooseTransferSyntax([TS.jpeg2000Lossless, TS.explicitVrLittleEndian])).toBe(
      TS.jpeg2000Lossless,
    );
    expect(chooseTransferSyntax([TS.rleLossless])).toBe(TS.rleLossless);
  });
  it("prefers explicit over implicit VR little endian", () => {
    expect(chooseTransferSyntax([TS.implicitVrLittleEndian, TS.explicitVrLittleEndian])).toBe(
      TS.explicitVrLittleEndian,
    );
    expect(chooseTransferSyntax([TS.implicitVrLittleEndian])).toBe(TS.implicitVrLittleEndian);
  });
  it("refuses what it cannot keep as sent (deflate, big endian, MPEG)", () => {
    expect(
      chooseTransferSyntax(["1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.100"]),
    ).toBeUndefined();
  });
});

describe("associationRejection", () => {
  const policy = { calledAet: "KNEEGRADE", allowedCallingAets: ["MODALITY"], maxAssociations: 2 };
  it("accepts a known calling AE that calls kneegrade below the limit", () => {
    expect(associationRejection(policy, 1, "MODALITY", "KNEEGRADE")).toBeNull();
    expect(
      associationRejection({ ...policy, allowedCallingAets: [] }, 0, "ANYONE", "KNEEGRADE"),
    ).toBeNull();
  });
  it("rejects an unknown calling AE and a wrong called AE permanently, with the PS3.8 reasons", () => {
    expect(associationRejection(policy, 0, "STRANGER", "KNEEGRADE")).toMatchObject({
      result: RJ.result.permanent,
      source: RJ.source.serviceUser,
      reason: RJ.reason.callingAeNotRecognized,
    });
    expect(associationRejection(policy, 0, "MODALITY", "OTHER")).toMatchObject({
      result: RJ.result.permanent,
      reason: RJ.reason.calledAeNotRecognized,
    });
  });
  it("rejects transiently at the association limit (the peer may retry)", () => {
    expect(associationRejection(policy, 2, "MODALITY", "KNEEGRADE")).toMatchObject({
      result: RJ.result.transient,
      source: RJ.source.serviceProviderPresentation,
      reason: RJ.reason.localLimitExceeded,
      text: "too many concurrent associations",
    });
  });
});

describe("WholeFileReader", () => {
  it("gives each caller exactly its file's bytes, concurrent calls included", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kneegrade-whole-"));
    try {
      const files = [300, 100, 2000, 0, 50].map((n, i) => ({
        path: join(dir, `${i}.bin`),
        bytes: Buffer.from(Array.from({ length: n }, (_, k) => (k * 7 + i) & 0xff)),
      }));
      for (const f of files) await writeFile(f.path, f.bytes);
      // A cap of 1000 bytes: the 2000-byte file is read into a buffer of its own.
      const reader = new WholeFileReader(1000);
      const seen = await Promise.all(
        files.map((f) => reader.read(f.path, f.bytes.length, (b) => Buffer.from(b))),
      );
      expect(seen.map((bytes, i) => bytes.equals(files[i]!.bytes))).toEqual(files.map(() => true));
      await expect(reader.read(join(dir, "missing"), 10, () => 1)).rejects.toThrow();
      expect(await reader.read(files[0]!.path, 300, (b) => b.length)).toBe(300);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
