/**
 * The model as the grading wants it: the ensemble opened once (manifest and files checked) behind
 * a micro-batcher that groups the knees of concurrent jobs into one inference call.
 */
import type { Config } from "@kneegrade/config";
import { Ensemble, MicroBatcher } from "@kneegrade/inference";
import type { Logger } from "@kneegrade/log";
import type { Metrics } from "@kneegrade/ops";
import type { KneePredictor } from "./grade.ts";

/** The ensemble behind a micro-batcher, as the grading code wants it. */
export async function openPredictor(
  config: Pick<
    Config,
    | "MODEL_DIR"
    | "INFERENCE_THREADS"
    | "INFERENCE_MAX_BATCH"
    | "INFERENCE_MAX_WAIT_MS"
    | "ALLOW_TEST_MODEL"
  > & { INFERENCE_PROVIDERS: string[] },
  log: Logger,
  metrics?: Metrics,
): Promise<{
  ensemble: Ensemble;
  predictor: KneePredictor;
  /** The execution provider each member really runs on. */
  providers: Record<string, string>;
  close(): Promise<void>;
}> {
  const ensemble = await Ensemble.open({
    modelDir: config.MODEL_DIR,
    providers: config.INFERENCE_PROVIDERS,
    ...(config.INFERENCE_THREADS > 0 ? { intraOpThreads: config.INFERENCE_THREADS } : {}),
    maxBatch: config.INFERENCE_MAX_BATCH,
    allowTestModel: config.ALLOW_TEST_MODEL,
    logger: log,
  });
  const batcher = new MicroBatcher(ensemble, {
    maxBatch: config.INFERENCE_MAX_BATCH,
    maxWaitMs: config.INFERENCE_MAX_WAIT_MS,
    ...(metrics
      ? {
          onBatch: (info: { size: number; ms: number; ok: boolean }) => {
            metrics.inferenceBatchSize.observe(info.size);
            metrics.inferenceBatchSeconds.observe(info.ms / 1000);
          },
        }
      : {}),
  });
  return {
    ensemble,
    predictor: {
      inputSize: ensemble.inputSize,
      predict: (inputs) => batcher.submit(inputs),
      localiser: ensemble.localiser,
    },
    providers: Object.fromEntries(ensemble.members.map((m) => [m.name, m.provider])),
    close: async () => {
      await batcher.close();
      await ensemble.close();
    },
  };
}
