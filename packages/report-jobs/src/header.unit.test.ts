/**
 * The reporter reads a graded image's header from the first bytes of its spooled file, and the
 * whole file only when the header goes on past them: the study context is the same either way.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readStudyContext } from "@kneegrade/dicom-writers";
import dcmjs from "dcmjs";
import { afterEach, describe, expect, it } from "vitest";
import { readHeaderBytes } from "./report.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A DX image of `side` × `side` 16-bit pixels; `privateBytes` of a private OB value before the study's UIDs. */
async function dx(side: number, privateBytes = 0): Promise<{ path: string; size: number }> {
  const { DicomDict, DicomMetaDictionary } = dcmjs.data;
  const sopClassUid = "1.2.840.10008.5.1.4.1.1.1.1";
  const sopInstanceUid = "1.2.826.0.1.3680043.8.498.77.1";
  const dict = new DicomDict(
    DicomMetaDictionary.denaturalizeDataset({
      FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
      MediaStorageSOPClassUID: sopClassUid,
      MediaStorageSOPInstanceUID: sopInstanceUid,
      TransferSyntaxUID: "1.2.840.10008.1.2.1",
      ImplementationClassUID: "1.2.826.0.1.3680043.8.498.77",
    }),
  );
  dict.dict = DicomMetaDictionary.denaturalizeDataset({
    SpecificCharacterSet: "ISO_IR 192", // dcmjs writes text as UTF-8
    SOPClassUID: sopClassUid,
    SOPInstanceUID: sopInstanceUid,
    StudyDate: "20261127",
    AccessionNumber: "ACC-77",
    Modality: "DX",
    PatientName: "Müller^Jörg",
    PatientID: "PAT-77",
    StudyInstanceUID: "1.2.826.0.1.3680043.8.498.77.2",
    SeriesInstanceUID: "1.2.826.0.1.3680043.8.498.77.3",
    SamplesPerPixel: 1,
    PhotometricInterpretation: "MONOCHROME2",
    Rows: side,
    Columns: side,
    BitsAllocated: 16,
    BitsStored: 12,
    HighBit: 11,
    PixelRepresentation: 0,
    _vrMap: { PixelData: "OW" },
    PixelData: [new Uint16Array(side * side).fill(1000).buffer],
  });
  if (privateBytes > 0) {
    dict.dict["00190010"] = { vr: "LO", Value: ["KNEEGRADE TEST"] };
    dict.dict["00191010"] = { vr: "OB", Value: [new Uint8Array(privateBytes).fill(7).buffer] };
  }
  const bytes = new Uint8Array(dict.write());
  const dir = await mkdtemp(join(tmpdir(), "kneegrade-header-"));
  dirs.push(dir);
  const path = join(dir, "image.dcm");
  await writeFile(path, bytes);
  return { path, size: bytes.length };
}

describe("readHeaderBytes", () => {
  it("reads only the first bytes of a large image whose header they hold", async () => {
    const { path, size } = await dx(1024);
    expect(size).toBeGreaterThan(2 * 1024 * 1024);
    const head = await readHeaderBytes(path);
    expect(head.length).toBe(256 * 1024);
    expect(readStudyContext(head).context).toMatchObject({
      studyInstanceUid: "1.2.826.0.1.3680043.8.498.77.2",
      patientName: "Müller^Jörg",
      patientId: "PAT-77",
      accessionNumber: "ACC-77",
    });
  });

  it("reads the whole file when the header goes on past the first bytes", async () => {
    const { path, size } = await dx(1024, 400 * 1024);
    const head = await readHeaderBytes(path);
    expect(head.length).toBe(size);
    // The study's UIDs come after the large private value.
    const read = readStudyContext(head);
    expect(read.context.studyInstanceUid).toBe("1.2.826.0.1.3680043.8.498.77.2");
    expect(read.image.seriesInstanceUid).toBe("1.2.826.0.1.3680043.8.498.77.3");
  });

  it("reads a small file whole", async () => {
    const { path, size } = await dx(64);
    expect(size).toBeLessThan(256 * 1024);
    expect((await readHeaderBytes(path)).length).toBe(size);
  });
});
