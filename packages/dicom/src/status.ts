/** DIMSE status codes (PS3.4 Annex B.2.3, PS3.7 Annex C) that the listener answers with. */
export const DIMSE_STATUS = {
  success: 0x0000,
  /** Refused: out of resources (disk watermark, size limit, database unreachable). */
  outOfResources: 0xa700,
  /** Error: data set does not match SOP class (missing UIDs, no pixel data, UID mismatch). */
  datasetDoesNotMatchSopClass: 0xa900,
  /** Error: cannot understand (the data set could not be parsed). */
  cannotUnderstand: 0xc000,
} as const;

/** A-ASSOCIATE-RJ parameters (PS3.8 9.3.4). */
export const ASSOCIATION_REJECT = {
  result: { permanent: 1, transient: 2 },
  source: { serviceUser: 1, serviceProviderPresentation: 3 },
  reason: {
    noReasonGiven: 1,
    callingAeNotRecognized: 3,
    calledAeNotRecognized: 7,
    /** Source 3 (presentation): local limit exceeded. */
    localLimitExceeded: 2,
  },
} as const;
