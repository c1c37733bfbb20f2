/** Why the ensemble cannot open a model or grade the crops it was given. */
export type InferenceErrorCode =
  | "MODEL_MISSING"
  | "MODEL_INVALID"
  | "MODEL_NOT_FOR_PATIENTS"
  | "NO_PROVIDER"
  | "BAD_INPUT"
  | "CLOSED";

export class InferenceError extends Error {
  constructor(
    readonly code: InferenceErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "InferenceError";
  }
}
