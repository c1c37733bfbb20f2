/**
 * What an SR document says about itself, whatever its content tree: the SR Document Series, General
 * Equipment, SR Document General and SOP Common attributes — verification and predecessor for a
 * signed revision, completion for a study the AI did not cover whole — and the refusal of inputs
 * that would write a wrong report (the secondary capture applies it too).
 */
import {
  clip,
  contributingEquipment,
  type Dataset,
  dicomDateTime,
  patientAndStudy,
  referencesBySeries,
  sourceImages,
} from "./dataset.ts";
import { isTestModel } from "./text.ts";
import type { ReportInput, Signature } from "./types.ts";

export const SR_SOP_CLASSES = {
  basicText: "1.2.840.10008.5.1.4.1.1.88.11",
  comprehensive: "1.2.840.10008.5.1.4.1.1.88.33",
} as const;

export function seriesDescription(input: ReportInput, kind: "report" | "images"): string {
  // LO: at most 64 characters (and 64 UTF-8 bytes for strict validators).
  if (input.signature && kind === "report") {
    return isTestModel(input)
      ? "TEST MODEL – signed report (kneegrade review)"
      : "Signed report (kneegrade review)";
  }
  if (isTestModel(input)) {
    return `TEST MODEL – NOT FOR CLINICAL USE – AI ${kind === "report" ? "result" : "images"} (kneegrade)`;
  }
  return `AI result${kind === "report" ? "" : " images"} (kneegrade) – requires review`;
}

/** SR Document Series, General Equipment, SR Document General and SOP Common attributes. */
export function srDocument(
  input: ReportInput,
  sopClassUid: string,
  sopInstanceUid: string,
  instanceNumber: number,
): Dataset {
  const { date, time, offset } = dicomDateTime(input.contentDateTime);
  const images = sourceImages(input);
  const ds: Dataset = {
    SpecificCharacterSet: "ISO_IR 192",
    InstanceCreationDate: date,
    InstanceCreationTime: time,
    SOPClassUID: sopClassUid,
    SOPInstanceUID: sopInstanceUid,
    ContentDate: date,
    ContentTime: time,
    Modality: "SR",
    Manufacturer: clip(input.algorithm.manufacturer, 64),
    TimezoneOffsetFromUTC: offset,
    SeriesDescription: clip(seriesDescription(input, "report"), 64),
    ManufacturerModelName: clip(input.algorithm.name, 64),
    SoftwareVersions: clip(input.algorithm.softwareVersion, 64),
    ...patientAndStudy(input),
    SeriesInstanceUID: input.seriesInstanceUid,
    SeriesNumber: input.seriesNumber,
    InstanceNumber: instanceNumber,
    ReferencedPerformedProcedureStepSequence: [],
    PerformedProcedureCodeSequence: [],
    ContributingEquipmentSequence: contributingEquipment(input),
    VerificationFlag: "UNVERIFIED",
    ...completion(input),
  };
  if (input.signature) Object.assign(ds, verification(input, input.signature));
  if (input.institutionName) ds.InstitutionName = clip(input.institutionName, 64);
  if (images.length > 0) {
    ds.CurrentRequestedProcedureEvidenceSequence = [
      {
        StudyInstanceUID: input.context.studyInstanceUid,
        ReferencedSeriesSequence: referencesBySeries(images),
      },
    ];
  }
  return ds;
}

/** A signed revision: VERIFIED by the radiologist who signed, superseding its predecessor. */
function verification(input: ReportInput, signer: Signature): Dataset {
  const at = dicomDateTime(signer.dateTime);
  return {
    VerificationFlag: "VERIFIED",
    VerifyingObserverSequence: [
      {
        VerifyingObserverName: clip(signer.observerName, 64),
        VerifyingObserverIdentificationCodeSequence: [],
        VerifyingOrganization: clip(signer.organisation, 64),
        VerificationDateTime: `${at.date}${at.time}${at.offset}`,
      },
    ],
    PredecessorDocumentsSequence: [
      {
        StudyInstanceUID: input.context.studyInstanceUid,
        ReferencedSeriesSequence: referencesBySeries([signer.predecessor]),
      },
    ],
  };
}

/**
 * COMPLETE when every image of the study was graded; PARTIAL (with the reason) when some image
 * could not be, or no knee was graded: the AI's content does not cover the whole study.
 */
function completion(input: ReportInput): Dataset {
  const n = input.ungraded.length;
  const k = input.notGraded?.length ?? 0;
  if (n === 0 && k === 0 && input.knees.length > 0) return { CompletionFlag: "COMPLETE" };
  const parts: string[] = [];
  if (k > 0)
    parts.push(
      k === 1 ? "1 knee not graded (arthroplasty)" : `${k} knees not graded (arthroplasty)`,
    );
  if (n > 0) parts.push(n === 1 ? "1 image not graded" : `${n} images not graded`);
  if (parts.length === 0) parts.push("no knee graded");
  return { CompletionFlag: "PARTIAL", CompletionFlagDescription: clip(parts.join("; "), 64) };
}

/** Refuses inputs that would write a wrong report. */
export function validate(input: ReportInput): void {
  const signer = input.signature;
  if (signer) {
    if (signer.knees.length !== input.knees.length) {
      throw new RangeError(
        `a signature needs one decision per knee: ${signer.knees.length} for ${input.knees.length}`,
      );
    }
    for (const d of signer.knees) {
      if (d.grade === null ? d.notGradableReason.trim() === "" : !klGrade(d.grade)) {
        throw new RangeError(
          d.grade === null
            ? "a knee marked not gradable needs a reason"
            : `Kellgren-Lawrence grade out of range: ${d.grade}`,
        );
      }
    }
    if (signer.observerName.trim() === "") throw new RangeError("a signature needs a name");
  }
  for (const knee of input.knees) {
    if (!klGrade(knee.grade)) {
      throw new RangeError(`Kellgren-Lawrence grade out of range: ${knee.grade}`);
    }
    if (knee.probabilities.length !== 5 || knee.probabilities.some((p) => !(p >= 0 && p <= 1))) {
      throw new RangeError(
        `expected 5 probabilities in 0..1, got [${knee.probabilities.join(", ")}]`,
      );
    }
  }
}

const klGrade = (g: number) => Number.isInteger(g) && g >= 0 && g <= 4;
