/**
 * Finds the installed model: `<MODEL_DIR>/manifest.json` and the ONNX members it lists, each
 * checked against its sha256. Without one the worker does not take jobs: they wait, nothing is lost.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

const Manifest = z.object({
  version: z.string().min(1),
  members: z
    .array(
      z.object({ name: z.string().min(1), file: z.string().min(1), sha256: z.string().length(64) }),
    )
    .min(1),
});
export type ModelManifest = z.infer<typeof Manifest>;

export type ModelCheck =
  | { ok: true; manifest: ModelManifest }
  | { ok: false; code: "MODEL_MISSING" | "MODEL_INVALID"; reason: string };

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
    return {
      ok: false,
      code: "MODEL_INVALID",
      reason: `${manifestPath}: ${parsed.error.issues[0]?.message}`,
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
