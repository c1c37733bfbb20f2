/**
 * Finds the installed model: `<MODEL_DIR>/manifest.json` (format in models/README.md) and the ONNX
 * members it lists, each checked against its sha256. Without a usable one the worker takes no
 * jobs: they wait, nothing is lost. The check itself lives in @kneegrade/inference.
 */
import { type LoadModelOptions, loadModel, type ModelCheck } from "@kneegrade/inference";

export type { ModelCheck, ModelManifest } from "@kneegrade/inference";

/**
 * The worker's check. A status "smoke" model is refused (MODEL_NOT_FOR_PATIENTS) unless
 * `allowTestModel` is set (tests only).
 */
export async function checkModel(
  modelDir: string,
  options: LoadModelOptions = {},
): Promise<ModelCheck> {
  return loadModel(modelDir, options);
}
