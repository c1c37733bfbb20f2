/**
 * The reporter service: writes the Structured Report of a graded study and delivers it to the PACS.
 *
 * This version checks that the PACS answers C-ECHO at start-up, so a misconfigured destination is
 * visible from the first minute. Writing and delivering reports arrives with grading.
 */
import type { Config } from "@kneegrade/config";
import { cEcho } from "@kneegrade/dicom";
import type { Logger } from "@kneegrade/log";

export interface RunningReporter {
  pacsReachable: boolean;
  close(): Promise<void>;
}

export async function startReporter(config: Config, log: Logger): Promise<RunningReporter> {
  const outcome = await cEcho({
    host: config.PACS_HOST,
    port: config.PACS_PORT,
    calledAet: config.PACS_AET,
    callingAet: config.LISTENER_AET,
    timeoutMs: 5_000,
  });
  const pacsReachable = outcome.status === 0;
  const where = { pacs: `${config.PACS_AET}@${config.PACS_HOST}:${config.PACS_PORT}` };
  if (pacsReachable) log.info({ event: "reporter.pacs-ok", ...where }, "PACS answers C-ECHO");
  else {
    log.warn(
      { event: "reporter.pacs-unreachable", ...where, err: outcome.error },
      "PACS does not answer C-ECHO: reports will wait until it does",
    );
  }
  return { pacsReachable, close: async () => {} };
}
