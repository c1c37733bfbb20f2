/** A composed radiograph written as a DX Part 10 file, with the header variants the tests need. */
import { randomUid as newUid } from "@kneegrade/dicom";
import dcmjs from "dcmjs";
import type { ComposedRadiograph } from "./radiographs.ts";

export interface RadiographDicomOptions {
  studyInstanceUid?: string;
  /** Default SYNTH0001; studies shown side by side (the demo's) each need their own. */
  accessionNumber?: string;
  seriesInstanceUid?: string;
  sopInstanceUid?: string;
  photometric?: "MONOCHROME1" | "MONOCHROME2";
  /** Which attribute carries the spacing (DX writes ImagerPixelSpacing; CR often PixelSpacing). */
  spacingAttribute?: "PixelSpacing" | "ImagerPixelSpacing" | "none";
  patientOrientation?: [string, string] | null;
  imageLaterality?: "R" | "L" | "B" | "U" | null;
  viewPosition?: string;
  bodyPart?: string;
  /** Study and Series Description (default: a bilateral knee study). */
  studyDescription?: string;
  seriesDescription?: string;
}

/** The Patient module of every composed radiograph: a made-up patient, no one's data. */
const SYNTHETIC_PATIENT = {
  PatientName: "Synthetic^Knee",
  PatientID: "SYNTH-KNEE",
  PatientBirthDate: "",
  PatientSex: "O",
};

/** Writes a composed radiograph as a DX (for presentation) Part 10 file, Explicit VR Little Endian. */
export function radiographDicom(r: ComposedRadiograph, o: RadiographDicomOptions = {}): Uint8Array {
  const { DicomDict, DicomMetaDictionary } = dcmjs.data;
  const photometric = o.photometric ?? "MONOCHROME2";
  const pixels =
    photometric === "MONOCHROME1" ? r.stored.map((v) => 4095 - v) : Uint16Array.from(r.stored);
  const sopClassUid = "1.2.840.10008.5.1.4.1.1.1.1"; // Digital X-Ray Image Storage - For Presentation
  const sopInstanceUid = o.sopInstanceUid ?? newUid();
  const spacing = [r.spacingMm, r.spacingMm];
  const spacingAttribute = o.spacingAttribute ?? "ImagerPixelSpacing";
  const dataset: Record<string, unknown> = {
    SpecificCharacterSet: "ISO_IR 100",
    ImageType: ["ORIGINAL", "PRIMARY"],
    SOPClassUID: sopClassUid,
    SOPInstanceUID: sopInstanceUid,
    StudyDate: "20261127",
    ContentDate: "20261127",
    StudyTime: "101500",
    ContentTime: "101500",
    AccessionNumber: o.accessionNumber ?? "SYNTH0001",
    Modality: "DX",
    PresentationIntentType: "FOR PRESENTATION",
    Manufacturer: "kneegrade test composer",
    ReferringPhysicianName: "",
    StudyDescription: o.studyDescription ?? "XR KNEE BILATERAL (synthetic test image)",
    SeriesDescription: o.seriesDescription ?? "Knees AP",
    ...SYNTHETIC_PATIENT,
    BodyPartExamined: o.bodyPart ?? "KNEE",
    ViewPosition: o.viewPosition ?? "AP",
    StudyInstanceUID: o.studyInstanceUid ?? newUid(),
    SeriesInstanceUID: o.seriesInstanceUid ?? newUid(),
    StudyID: "1",
    SeriesNumber: "1",
    InstanceNumber: "1",
    SamplesPerPixel: 1,
    PhotometricInterpretation: photometric,
    Rows: r.height,
    Columns: r.width,
    BitsAllocated: 16,
    BitsStored: 12,
    HighBit: 11,
    PixelRepresentation: 0,
    WindowCenter: "2048",
    WindowWidth: "4096",
    RescaleIntercept: "0",
    RescaleSlope: "1",
    RescaleType: "US",
    LossyImageCompression: "00",
    BurnedInAnnotation: "NO",
    PixelIntensityRelationship: "LOG",
    PixelIntensityRelationshipSign: photometric === "MONOCHROME1" ? -1 : 1,
    DetectorType: "SCINTILLATOR",
    PixelData: [pixels.buffer],
    _vrMap: { PixelData: "OW" },
  };
  if (spacingAttribute !== "none") dataset[spacingAttribute] = spacing;
  if (o.patientOrientation !== null)
    dataset.PatientOrientation = o.patientOrientation ?? ["L", "F"];
  if (o.imageLaterality !== null) dataset.ImageLaterality = o.imageLaterality ?? "B";
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: sopClassUid,
    MediaStorageSOPInstanceUID: sopInstanceUid,
    TransferSyntaxUID: "1.2.840.10008.1.2.1",
    ImplementationClassUID: "2.25.300419254128446211542468591235212390941",
    ImplementationVersionName: "KNEEGRADE_TEST",
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(dataset);
  return new Uint8Array(dict.write());
}
