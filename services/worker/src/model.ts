/**
 * Finds the installed model: `<MODEL_DIR>/manifest.json` (format in models/README.md) and the ONNX
 * members it lists, each checked against its sha256. Without a usable one the worker takes no
 * jobs: they wait, nothing is lost.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

/** The parts of the manifest the worker relies on. */
const Manifest = z.object({
  schema_version: z.literal(1),
  kind: z.literal("kneegrade-kl-ensemble"),
  /** "smoke" models come from the CI rehearsal: never used to grade a patient's knee. */
  status: z.enum(["smoke", "candidate", "release"]),
  labels: z.array(z.string()).length(5),
  members: z
    .array(
      z.object({
        name: z.string().min(1),
        file: z.string().min(1),
        sha256: z.string().regex(/^[0-9a-f]{64}$/),
        temperature: z.number().positive(),
      }),
    )
    .min(1),
  ensemble: z.object({ rule: z.literal("mean_calibrated_probabilities") }),
});
export type ModelManifest = z.infer<typeof Manifest>;

export type ModelCheck =
  | { ok: true; manifest: ModelManifest }
  | {
      ok: false;
      code: "MODEL_MISSING" | "MODEL_INVALID" | "MODEL_NOT_FOR_PATIENTS";
      reason: string;
    };

export async function checkModel(modelDir: string): Promise<ModelCheck> {
  const manifestPath = join(modelDir, "manifest.json");
  let json: unknown;
  try {
    json = JSON.parse(await readFile(manifestPath, "utf8"));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
    return {
      ok: false,
      code: missing ? "MODEL_MISSING" : "MODEL_INVALID",
      reason: missing
        ? `no model manifest at ${manifestPath}`
        : `${manifestPath}: ${(error as Error).message}`,
    };
  }
  const parsed = Manifest.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      code: "MODEL_INVALID",
      reason: `${manifestPath}: ${issue?.path.join(".")}: ${issue?.message}`,
    };
  }
  if (parsed.data.status === "smoke") {
    return {
      ok: false,
      code: "MODEL_NOT_FOR_PATIENTS",
      reason: `${manifestPath} is a smoke-test model (status "smoke"): it must never grade patients`,
    };
  }
  for (const member of parsed.data.members) {
    const path = join(modelDir, member.file);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch {
      return {
        ok: false,
        code: "MODEL_MISSING",
        reason: `member ${member.name}: ${path} not found`,
      };
    }
    if (createHash("sha256").update(bytes).digest("hex") !== member.sha256) {
      return { ok: false, code: "MODEL_INVALID", reason: `member ${member.name}: sha256 mismatch` };
    }
  }
  return { ok: true, manifest: parsed.data };
}
