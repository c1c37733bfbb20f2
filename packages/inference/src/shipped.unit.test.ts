/**
 * The model that ships in the repository (models/dist, the default MODEL_DIR): accepted for
 * patients without any test-model switch, within the size budget, and onnxruntime-node reproduces
 * the PyTorch outputs recorded in its fixtures.
 */
import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "@kneegrade/config";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "./manifest.ts";
import { Ensemble } from "./runtime.ts";
import { captureLogger } from "./test-support.ts";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const DIST = resolve(ROOT, "models/dist");

interface Fixtures {
  input: { shape: number[]; grey_uint8: number[] };
  tolerance: { abs: number };
  members: Record<string, Record<string, { shape: number[]; data: number[] }>>;
  ensemble: { probabilities: number[][]; grades: number[] };
}

describe("the shipped model (models/dist)", () => {
  let ensemble: Ensemble;
  let fixtures: Fixtures;

  beforeAll(async () => {
    fixtures = JSON.parse(await readFile(join(DIST, "fixtures.json"), "utf8")) as Fixtures;
    ensemble = await Ensemble.open({
      modelDir: DIST,
      intraOpThreads: 2,
      logger: captureLogger().logger,
    });
  });
  afterAll(async () => {
    await ensemble?.close();
  });

  it("is the default MODEL_DIR and is accepted without ALLOW_TEST_MODEL", async () => {
    expect(resolve(ROOT, loadConfig({}).MODEL_DIR)).toBe(DIST);
    const check = await loadModel(DIST);
    expect(check.ok, check.ok ? "" : check.reason).toBe(true);
    if (!check.ok) return;
    expect(check.manifest.status).toBe("trained");
    expect(check.manifest.members.length).toBe(4);
    expect(new Set(check.manifest.members.map((m) => m.backbone)).size).toBe(4);
    let bytes = 0;
    for (const m of check.manifest.members) bytes += (await stat(join(DIST, m.file))).size;
    expect(bytes).toBeLessThanOrEqual(64 * 2 ** 20);
  });

  it("matches its PyTorch fixtures in onnxruntime-node", async () => {
    const [n, , h, w] = fixtures.input.shape as [number, number, number, number];
    const grey = Uint8Array.from(fixtures.input.grey_uint8);
    const crops = Array.from({ length: n }, (_, i) => grey.subarray(i * h * w, (i + 1) * h * w));
    const raw = await ensemble.runRaw(crops);
    for (const member of raw) {
      const logits = member.outputs.logits!;
      const ref = fixtures.members[member.name]!.logits!;
      let d = 0;
      for (let i = 0; i < ref.data.length; i++)
        d = Math.max(d, Math.abs(logits.data[i]! - ref.data[i]!));
      expect(d, member.name).toBeLessThanOrEqual(fixtures.tolerance.abs);
    }
    const predictions = await ensemble.predict(crops);
    expect(predictions.map((p) => p.grade)).toEqual(fixtures.ensemble.grades);
    // The ensemble temperature (manifest) applied as PyTorch applied it.
    predictions.forEach((p, i) => {
      const ref = fixtures.ensemble.probabilities[i]!;
      const d = Math.max(...p.probabilities.map((v, g) => Math.abs(v - ref[g]!)));
      expect(d, `crop ${i}`).toBeLessThanOrEqual(1e-4);
    });
  });
});
