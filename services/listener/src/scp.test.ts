import { TRANSFER_SYNTAXES as TS } from "@kneegrade/dicom";
import { describe, expect, it } from "vitest";
import { chooseTransferSyntax } from "./scp.ts";

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
