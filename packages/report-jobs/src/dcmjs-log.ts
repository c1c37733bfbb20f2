/**
 * dcmjs's console output through the structured log, without the header values it quotes (see
 * @kneegrade/dicom-writers, dcmjs-log.ts). Called by whatever writes report objects, before it writes.
 */

import { dcmjsLoggers, dcmjsMessageWithoutValues } from "@kneegrade/dicom-writers";
import { type Logger, routeLoglevel } from "@kneegrade/log";

export function routeDcmjsLog(log: Logger): void {
  for (const logger of dcmjsLoggers()) {
    routeLoglevel(logger, log, "dcmjs", "warn", dcmjsMessageWithoutValues);
  }
}
