/**
 * Permanent failures carry a stable `code` and are never retried blindly. BullMQ recognises
 * `UnrecoverableError` by name across processes, so ours keeps that name.
 */
export type PermanentErrorCode =
  | "MODEL_MISSING"
  | "NO_KNEE_FOUND"
  | "UNSUPPORTED_TRANSFER_SYNTAX"
  | "INVALID_OBJECT"
  | "STUDY_NOT_FOUND";

export class PermanentError extends Error {
  constructor(
    readonly code: PermanentErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = "UnrecoverableError";
  }
}
