/** The inputs of the report writers (see README.md). */

export interface SourceImage {
  sopClassUid: string;
  sopInstanceUid: string;
  seriesInstanceUid: string;
}

/** Patient/study attributes copied from the graded images so the objects file into the same study. */
export interface StudyContext {
  studyInstanceUid: string;
  patientName?: string;
  patientId?: string;
  issuerOfPatientId?: string;
  patientBirthDate?: string;
  patientSex?: string;
  studyDate?: string;
  studyTime?: string;
  studyId?: string;
  accessionNumber?: string;
  referringPhysicianName?: string;
  studyDescription?: string;
}

export interface KneeFinding {
  laterality: "R" | "L" | "U";
  /** e.g. "ImageLaterality" or "image side and PatientOrientation (...)". */
  lateralitySource: string;
  /**
   * The side was assumed (no PatientOrientation: AP display convention). When absent, it is read
   * from `lateralitySource` (the knee package writes "assuming ..." there).
   */
  lateralityAssumed?: boolean;
  /** 0..4 */
  grade: number;
  /** 5 values, KL 0..4. */
  probabilities: number[];
  localisationScore: number;
  lowConfidence: boolean;
  /** The image the knee was found in. */
  source: SourceImage;
  /** Pixels in that image. */
  region: { x: number; y: number; width: number; height: number } | null;
  /** 224x224 grey PNG the model graded (for the secondary capture). */
  cropPng?: Uint8Array;
  /** Grey PNG (any size, 0..255) of where the model looked. */
  heatmapPng?: Uint8Array;
}

/**
 * A knee found in a graded image but given no grade on purpose: a knee arthroplasty (a prosthesis
 * at the joint). Reported as such ("knee arthroplasty — not graded"), never with a KL grade.
 */
export interface NotGradedKnee {
  laterality: "R" | "L" | "U";
  lateralitySource: string;
  lateralityAssumed?: boolean;
  /** Stable code: "ARTHROPLASTY". */
  code: string;
  /** The reader's words, e.g. "knee arthroplasty — not graded". */
  reason: string;
  localisationScore: number;
  source: SourceImage;
  region: { x: number; y: number; width: number; height: number } | null;
}

/** An image of the study that was not graded, e.g. code NO_KNEE_FOUND or NOT_AP_VIEW. */
export interface UngradedImage {
  source: SourceImage;
  code: string;
  reason: string;
}

/** A coded concept (PS3.3 Code Sequence Macro). */
export interface Code {
  value: string;
  scheme: string;
  meaning: string;
}

/** A radiologist's decision on one knee: a grade, or not gradable with a reason. */
export type KneeDecision = { grade: number } | { grade: null; notGradableReason: string };

/**
 * A radiologist's signature (the review pages): turns the Comprehensive SR into a VERIFIED
 * revision that supersedes `predecessor`.
 */
export interface Signature {
  /** Verifying Observer Name, PN ("Family^Given"). */
  observerName: string;
  organisation: string;
  dateTime: Date;
  /** The SR this one supersedes: the unverified AI SR, or the previous signed SR. */
  predecessor: SourceImage;
  /** In `ReportInput.knees` order. */
  knees: KneeDecision[];
  /** The signed report text, one statement per line. */
  findings: string[];
  impression: string[];
}

export interface ReportInput {
  context: StudyContext;
  knees: KneeFinding[];
  /** Knees found but not graded (arthroplasty); absent means none. */
  notGraded?: NotGradedKnee[];
  ungraded: UngradedImage[];
  warnings: string[];
  algorithm: {
    name: string;
    version: string;
    /**
     * The model's fingerprint: the first 12 hex digits of sha256 over its members' sha256 (the
     * last part of `version`); not the hash of any one file.
     */
    modelFingerprint: string;
    /** "smoke" | "candidate" | "release" */
    modelStatus: string;
    manufacturer: string;
    softwareVersion: string;
  };
  /** Unique per study revision; fixed by the caller so a retried write produces the same UIDs. */
  seriesInstanceUid: string;
  sopInstanceUid: string;
  seriesNumber: number;
  instanceNumber: number;
  contentDateTime: Date;
  /** The installation's device UID. */
  deviceObserverUid: string;
  institutionName?: string;
  /**
   * Procedure reported (DCM 121058) in the Comprehensive SR, e.g. the site's code for a knee
   * radiograph. Default: (363679005, SCT, "Imaging procedure").
   */
  procedureReported?: Code;
  /** Series Number of the secondary capture's series. Default: seriesNumber + 1. */
  secondaryCaptureSeriesNumber?: number;
  /** Present for a signed SR revision (Comprehensive SR only). */
  signature?: Signature;
}
