export {
  heatmapOverlayPng,
  renderSecondaryCapture,
  SECONDARY_CAPTURE_SOP_CLASS,
  type SecondaryCaptureLayout,
  secondaryCaptureLayout,
  writeSecondaryCapture,
} from "./capture.ts";
export {
  CODES,
  CODING_SCHEMES,
  KL_CODING_SCHEME,
  KL_GRADE_WORDS,
  klGradeCode,
  kneeFindingCode,
  notGradableFindingCode,
  notGradedFindingCode,
} from "./codes.ts";
export { readStudyContext } from "./context.ts";
export { clampStudyContext } from "./dataset.ts";
export { type DcmjsLogger, dcmjsLoggers, dcmjsMessageWithoutValues } from "./dcmjs-log.ts";
export {
  algorithmOf,
  byReadingOrder,
  type KneeResultRow,
  kneeFinding,
  SIDE_CODE,
} from "./results.ts";
export { writeBasicTextSr, writeComprehensiveSr } from "./sr.ts";
export { SR_SOP_CLASSES, seriesDescription } from "./sr-document.ts";
export { trackingUid } from "./sr-templates.ts";
export {
  lateralityAssumed,
  reportLines,
  reportText,
  signedReportLines,
  TEST_MODEL_NOTICE,
  UNVERIFIED_NOTICE,
} from "./text.ts";
export type * from "./types.ts";
export {
  type DerivedUids,
  derivedUid,
  derivedUids,
  isValidUid,
  reportUids,
  signedSrUid,
} from "./uids.ts";
