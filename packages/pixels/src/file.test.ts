/** readRadiographFile: header and pixels from one parse, with the errors of the two readers. */
import { readFileSync } from "node:fs";
import { DicomParseError, readRadiographHeader } from "@kneegrade/dicom";
import { describe, expect, it } from "vitest";
import { WG04_DIR } from "../../../tests/helpers/paths.ts";
import { PixelDataError, readRadiograph, readRadiographFile } from "./index.ts";
import { type SyntheticImage, syntheticImage, writePart10 } from "./synthetic.ts";

const UIDS = [
  { tag: 0x0020000d, vr: "UI", value: "1.2.826.0.1.3680043.10.543.2" },
  { tag: 0x0020000e, vr: "UI", value: "1.2.826.0.1.3680043.10.543.3" },
] as const;
const image: SyntheticImage = { rows: 64, columns: 64, pixels: new Array(4096).fill(1) };

describe("readRadiographFile", () => {
  it("gives the same header and pixels as the two readers (WG04 JPEG 2000)", async () => {
    const bytes = readFileSync(`${WG04_DIR}RG3_J2KR.dcm`);
    const { header, radiograph } = await readRadiographFile(bytes);
    expect(header).toEqual(readRadiographHeader(bytes, true));
    const separate = await readRadiograph(bytes);
    expect(radiograph.width).toBe(separate.width);
    expect(radiograph.voi).toEqual(separate.voi);
    expect(Buffer.from(radiograph.display).equals(Buffer.from(separate.display))).toBe(true);
  });

  it("reports a header problem as the header reader does, before any pixel problem", async () => {
    // No Study/Series Instance UID, and Pixel Data cut short: the header is what is wrong first.
    const whole = writePart10(syntheticImage(image));
    const error = await readRadiographFile(whole.subarray(0, whole.length - 1000)).catch((e) => e);
    expect(error).toBeInstanceOf(DicomParseError);
    expect(error.message).toMatch(/missing StudyInstanceUID/);
    const noUids = await readRadiographFile(writePart10(syntheticImage(image))).catch((e) => e);
    expect(noUids).toBeInstanceOf(DicomParseError);
  });

  it("reports truncated pixel data of a readable header as the pixel reader does", async () => {
    const whole = writePart10(syntheticImage({ ...image, extra: [...UIDS] }));
    expect((await readRadiographFile(whole)).header.studyInstanceUid).toBe(UIDS[0].value);
    const error = await readRadiographFile(whole.subarray(0, whole.length - 1000)).catch((e) => e);
    expect(error).toBeInstanceOf(PixelDataError);
    expect(error.code).toBe("CORRUPT_PIXEL_DATA");
    expect(error.message).toMatch(/Pixel Data \(7FE0,0010\) is truncated/);
  });
});
