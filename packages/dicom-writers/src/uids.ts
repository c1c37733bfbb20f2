import { uidFromName } from "@kneegrade/dicom";

/**
 * A UID derived deterministically from `seed` and `label` (`uidFromName` of "seed\nlabel"): the
 * same seed and label always give the same UID, so a retried write produces the same objects.
 */
export function derivedUid(seed: string, label: string): string {
  return uidFromName(`${seed}\n${label}`);
}

/** The UIDs of the objects written besides the Comprehensive SR, derived from the report's UIDs. */
export interface DerivedUids {
  /** Basic Text SR: in the Comprehensive SR's series, its own SOP Instance UID. */
  basicTextSr: { seriesInstanceUid: string; sopInstanceUid: string };
  /** Secondary capture: its own series (Modality OT) and SOP Instance UID. */
  secondaryCapture: { seriesInstanceUid: string; sopInstanceUid: string };
}

export function derivedUids(input: {
  seriesInstanceUid: string;
  sopInstanceUid: string;
}): DerivedUids {
  return {
    basicTextSr: {
      seriesInstanceUid: input.seriesInstanceUid,
      sopInstanceUid: derivedUid(input.sopInstanceUid, "basic-text-sr"),
    },
    secondaryCapture: {
      seriesInstanceUid: derivedUid(input.seriesInstanceUid, "secondary-capture-series"),
      sopInstanceUid: derivedUid(input.sopInstanceUid, "secondary-capture"),
    },
  };
}

/** A valid UID (PS3.5 9.1): ≤ 64 characters, digits and dots, no empty or zero-led component. */
export function isValidUid(uid: string): boolean {
  return uid.length <= 64 && /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(uid);
}

/**
 * The UIDs of a graded study revision's report objects, from its grading job's id: the AI's
 * unverified SR and its series, and the series that holds the radiologists' signed revisions.
 */
export function reportUids(gradingJobId: string) {
  return {
    aiSrSeries: uidFromName(`kneegrade:sr-series:${gradingJobId}`),
    aiSr: uidFromName(`kneegrade:sr:${gradingJobId}`),
    signedSrSeries: uidFromName(`kneegrade:signed-sr-series:${gradingJobId}`),
  };
}

/** The SOP Instance UID of one signature's (review's) signed SR. */
export const signedSrUid = (reviewId: string) => uidFromName(`kneegrade:signed-sr:${reviewId}`);
