import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { datasetBytes } from "../../../tests/helpers/studies.ts";
import {
  DicomParseError,
  IncompleteHeaderError,
  pixelDataProblem,
  readRadiographHeader,
} from "./header.ts";
import { encodeFileMetaInformation } from "./part10.ts";

const WG04 = new URL("../../../../shared/data/dicom/wg04/RG3_UNC.dcm", import.meta.url);

describe("encodeFileMetaInformation + readRadiographHeader", () => {
  const original = readFileSync(WG04);
  const meta = {
    mediaStorageSopClassUid: "1.2.840.10008.5.1.4.1.1.1",
    mediaStorageSopInstanceUid: "1.3.51.5145.5142.20010109.1105627.1.0.1",
    transferSyntaxUid: "1.2.840.10008.1.2.1",
    sourceAeTitle: "CR_ROOM",
  };
  const rebuilt = Buffer.concat([encodeFileMetaInformation(meta), datasetBytes(original)]);

  it("writes a File Meta Information group that DCMTK reads", () => {
    const dir = mkdtempSync(join(tmpdir(), "kneegrade-part10-"));
    const path = join(dir, "x.dcm");
    writeFileSync(path, rebuilt);
    const dump = execFileSync("dcmdump", [
      "-Un",
      "-M",
      "+P",
      "0002,0010",
      "+P",
      "0002,0016",
      path,
    ]).toString();
    expect(dump).toContain("[1.2.840.10008.1.2.1]");
    expect(dump).toContain("[CR_ROOM");
  });

  it("reads the routing attributes without the pixel data", () => {
    const h = readRadiographHeader(rebuilt, true);
    expect(h).toMatchObject({
      sopClassUid: meta.mediaStorageSopClassUid,
      transferSyntaxUid: "1.2.840.10008.1.2.1",
      modality: "CR",
      hasPixelData: true,
    });
    expect(h.studyInstanceUid).toMatch(/^[\d.]+$/);
  });

  it("asks for more bytes when the head ends inside the header, and refuses garbage", () => {
    expect(() => readRadiographHeader(rebuilt.subarray(0, 400), false)).toThrow(
      IncompleteHeaderError,
    );
    const garbage = Buffer.concat([
      encodeFileMetaInformation(meta),
      Buffer.from("\x08\x00\x18\x00UI\xff\xffxx"),
    ]);
    expect(() => readRadiographHeader(garbage, true)).toThrow(DicomParseError);
  });
});

describe("pixelDataProblem", () => {
  for (const name of ["RG3_UNC.dcm", "RG3_JPLL.dcm", "RG3_RLE.dcm"]) {
    it(`accepts the complete ${name} and refuses it cut short`, () => {
      const file = readFileSync(new URL(name, WG04));
      const header = readRadiographHeader(file, true);
      expect(pixelDataProblem(header, file.length, file.subarray(-1024))).toBeUndefined();
      const cut = file.subarray(0, file.length - 5000);
      expect(pixelDataProblem(header, cut.length, cut.subarray(-1024))).toMatch(/truncated/);
    });
  }
});
