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
