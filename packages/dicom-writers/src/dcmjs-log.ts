/**
 * dcmjs reports through `loglevel` straight to the console, quoting the values it handles:
 * "Truncating value <the value> of StudyDate because it is longer than 18", "Value exceeds max
 * length, vr: PN, value: <the patient's name>". Its loggers are handed to the services' structured
 * log (`routeDcmjsLog` in @kneegrade/report-jobs) with `dcmjsMessageWithoutValues` as the redaction.
 */
import dcmjs from "dcmjs";

/** The `loglevel` shape (as @kneegrade/log's LoglevelLike). */
export interface DcmjsLogger {
  methodFactory: (methodName: string, level: number, loggerName: string | symbol) => unknown;
  setLevel(level: "trace" | "debug" | "info" | "warn" | "error" | "silent"): void;
}

/** dcmjs's root logger and the named ones it made at load ("validation.dcmjs", ...). */
export function dcmjsLoggers(): DcmjsLogger[] {
  const root = dcmjs.log as DcmjsLogger & { getLoggers?: () => Record<string, DcmjsLogger> };
  // Named loggers copied the root's method factory when they were made: each is routed itself.
  return [root, ...Object.values(root.getLoggers?.() ?? {})];
}

/**
 * What a dcmjs message says, without the values it quotes. Attribute keywords and VRs are kept
 * (they come from the dictionary, shaped as words); everything else in an unrecognised message
 * is withheld, as it may be a header value.
 */
export function dcmjsMessageWithoutValues(text: string): string {
  const truncating =
    /^Truncating value [\s\S]* of ([A-Za-z0-9]+) because it is longer than (\d+)$/.exec(text);
  if (truncating) {
    return `dcmjs truncated a value of ${truncating[1]} to ${truncating[2]} characters (value withheld)`;
  }
  const exceeds = /^Value exceeds max length, vr: ([A-Z]{2}),/.exec(text);
  if (exceeds)
    return `dcmjs: a value of VR ${exceeds[1]} exceeds its maximum length (value withheld)`;
  const unknown = /^Unknown name in dataset ([A-Za-z0-9_]+) /.exec(text);
  if (unknown) return `dcmjs: unknown attribute name ${unknown[1]} in a data set (value withheld)`;
  const invalidVr = /^Invalid vr type ([A-Za-z]{2}) - using ([A-Z]{2})$/.exec(text);
  if (invalidVr) return text;
  return "dcmjs message withheld: it may quote header values";
}
