/**
 * dcmjs's console output through the structured log, without the header values it quotes (see
 * @kneegrade/reports, dcmjs-log.ts). Called by whatever writes report objects, before it writes.
 */
import { type Logger, routeLoglevel } from "@kneegrade/log";
import { dcmjsLoggers, dcmjsMessageWithoutValues } from "@kneegrade/reports";

export function routeDcmjsLog(log: Logger): void {
  for (const logger of dcmjsLoggers()) {
    routeLoglevel(logger, log, "dcmjs", "warn", dcmjsMessageWithoutValues);
  }
}
