/**
 * Structured JSON logs (pino). Every line carries a stable `event` name; study/series/SOP UIDs are
 * fine, patient data is not: the fields below are removed at the top level and one level down.
 */
import { pino } from "pino";

export type Logger = pino.Logger;

const PATIENT_FIELDS = [
  "PatientName",
  "PatientID",
  "PatientBirthDate",
  "patientName",
  "patientId",
  "patientBirthDate",
  "AccessionNumber",
  "accessionNumber",
];

export function createLogger(
  name: string,
  level = process.env.LOG_LEVEL ?? "info",
  destination?: pino.DestinationStream,
): Logger {
  const options: pino.LoggerOptions = {
    name,
    level,
    base: { app: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: [...PATIENT_FIELDS, ...PATIENT_FIELDS.map((f) => `*.${f}`)],
      remove: true,
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * What a log line says of an error: its message, and its code and name when it has them. Errors
 * are not always `Error`s (dicom-parser throws `{ exception, dataSet }`, some libraries strings):
 * without this they reach the log as "[object Object]".
 */
export function errorFields(error: unknown): { message: string; code?: string; name?: string } {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return {
      message: error.message,
      name: error.name,
      ...(typeof code === "string" || typeof code === "number" ? { code: String(code) } : {}),
    };
  }
  if (typeof error === "string") return { message: error };
  if (error && typeof error === "object") {
    const o = error as Record<string, unknown>;
    if (typeof o.exception === "string") return { message: o.exception };
    if (typeof o.message === "string") return { message: o.message };
    try {
      return { message: JSON.stringify(error).slice(0, 500) };
    } catch {
      return { message: Object.prototype.toString.call(error) };
    }
  }
  return { message: String(error) };
}

/** The shape of a `loglevel` logger (dcmjs-dimse's `log`). */
export interface LoglevelLike {
  methodFactory: (methodName: string, level: number, loggerName: string | symbol) => unknown;
  setLevel(level: "trace" | "debug" | "info" | "warn" | "error" | "silent"): void;
}

/**
 * Sends a `loglevel` logger's output (dcmjs-dimse prints plain text) through `log` as JSON lines
 * with `event: "<source>.log"`, keeping only `level` and above. With `redact`, the line says what
 * `redact` makes of the text instead of the text itself: for a library whose messages quote the
 * data it handles (dcmjs prints a header value it truncates), which must not reach the log.
 */
export function routeLoglevel(
  lib: LoglevelLike,
  log: Logger,
  source: string,
  level: "warn" | "error" = "warn",
  redact?: (text: string) => string,
): void {
  lib.methodFactory = (methodName: string) => {
    const target = methodName === "error" ? "error" : methodName === "warn" ? "warn" : "debug";
    return (...args: unknown[]) => {
      const text = args.map((a) => (typeof a === "string" ? a : errorFields(a).message)).join(" ");
      log[target]({ event: `${source}.log` }, redact ? redact(text) : text.slice(0, 2000));
    };
  };
  lib.setLevel(level); // re-applies the method factory
}
