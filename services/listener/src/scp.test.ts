import { ASSOCIATION_REJECT as RJ, TRANSFER_SYNTAXES as TS } from "@kneegrade/dicom";
import { describe, expect, it } from "vitest";
import { associationRejection, chooseTransferSyntax } from "./scp.ts";

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
