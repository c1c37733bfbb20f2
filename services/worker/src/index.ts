/**
 * The worker service: takes `grade-study` jobs and grades each knee with the PIM ensemble.
 *
 * This version checks the installed model at start-up and reports what is missing. Grading itself
 * (decode → localise → preprocess → predict → summarise) arrives with the model (issues 3–4);
 * until then `grade-study` jobs wait in their queue and are graded once a worker can take them.
 */
import type { Config } from "@kneegrade/config";
import type { Logger } from "@kneegrade/log";
import { checkModel, type ModelCheck } from "./model.ts";

export { checkModel, type ModelCheck } from "./model.ts";

export interface RunningWorker {
  model: ModelCheck;
  close(): Promise<void>;
}

export async function startWorker(config: Config, log: Logger): Promise<RunningWorker> {
  const model = await checkModel(config.MODEL_DIR);
  if (!model.ok) {
    log.error(
      { event: "worker.model-unavailable", code: model.code, reason: model.reason },
      "no usable model installed: grade-study jobs stay queued until one is (see docs/OPERATIONS.md)",
    );
  } else {
    log.warn(
      { event: "worker.grading-unavailable", modelStatus: model.manifest.status },
      "model found, but this kneegrade version does not grade yet: grade-study jobs stay queued",
    );
  }
  return { model, close: async () => {} };
}
