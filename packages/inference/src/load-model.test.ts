/** loadModel, the worker's model check, against manifests written the way models/ writes them. */
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadModel } from "./manifest.ts";

function modelDir(status: string, tamper = false) {
  const dir = mkdtempSync(join(tmpdir(), "kneegrade-model-"));
  const onnx = Buffer.from("not really onnx, only hashed here");
  writeFileSync(join(dir, "a.onnx"), onnx);
  const sha256 = createHash("sha256")
    .update(tamper ? Buffer.from("other") : onnx)
    .digest("hex");
  writeFileSync(
    join(dir, "manifest.json"),
    JSON.stringify({
      schema_version: 1,
      kind: "kneegrade-kl-ensemble",
      status,
      labels: ["KL0", "KL1", "KL2", "KL3", "KL4"],
      created_utc: "2026-01-01T00:00:00Z",
      members: [
        {
          name: "a",
          file: "a.onnx",
          sha256,
          input: {
            name: "image",
            dtype: "float32",
            layout: "NCHW",
            shape: ["batch", 1, 224, 224],
            channels: 1,
            height: 224,
            width: 224,
            intensity: { scale: 1 / 255, offset: 0 },
          },
          outputs: [{ name: "logits" }, { name: "tokens_l1" }],
          temperature: 1.2,
        },
      ],
      ensemble: { rule: "mean_calibrated_probabilities" },
    }),
  );
  return dir;
}

describe("loadModel", () => {
  it("accepts a candidate model whose files match their hashes", async () => {
    const check = await loadModel(modelDir("candidate"));
    expect(check.ok && check.manifest.members.map((m) => m.name)).toEqual(["a"]);
  });
  it("says what is missing", async () => {
    const check = await loadModel(join(tmpdir(), "no-such-model-dir"));
    expect(check).toMatchObject({ ok: false, code: "MODEL_MISSING" });
  });
  it("refuses a smoke-test model for patients", async () => {
    expect(await loadModel(modelDir("smoke"))).toMatchObject({
      ok: false,
      code: "MODEL_NOT_FOR_PATIENTS",
    });
  });
  it("accepts a smoke-test model only when tests allow it", async () => {
    const check = await loadModel(modelDir("smoke"), { allowTestModel: true });
    expect(check).toMatchObject({
      ok: true,
      version: expect.stringMatching(/^smoke-[0-9a-f]{12}$/),
    });
  });
  it("refuses a member whose bytes differ from the manifest", async () => {
    expect(await loadModel(modelDir("release", true))).toMatchObject({
      ok: false,
      code: "MODEL_INVALID",
      reason: expect.stringContaining("sha256 mismatch"),
    });
  });
});
