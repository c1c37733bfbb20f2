/** The model check against a model the models/ toolkit really built (and tampered copies of it). */
import { createHash } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testModel } from "@kneegrade/test-models";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InferenceError } from "./errors.ts";
import { loadModel, modelVersion } from "./manifest.ts";
import { Ensemble } from "./runtime.ts";
import { captureLogger, copyModel, membersOf } from "./test-support.ts";

let smoke: string;
const copies: string[] = [];
async function tampered(edit: (manifest: Record<string, unknown>) => void) {
  const dir = await copyModel(smoke, edit);
  copies.push(dir);
  return dir;
}

/** Refused alike by the check and by Ensemble.open, with the same code and reason. */
async function expectRefused(dir: string, code: string, reason: string) {
  expect(await loadModel(dir, { allowTestModel: true })).toMatchObject({ ok: false, code, reason });
  await expect(Ensemble.open({ modelDir: dir, allowTestModel: true })).rejects.toMatchObject({
    code,
    message: reason,
  });
}

beforeAll(async () => {
  smoke = await testModel("smoke");
});
afterAll(async () => {
  await Promise.all(copies.map((d) => rm(d, { recursive: true, force: true })));
});

describe("loadModel", () => {
  it("accepts the smoke model only with allowTestModel, with its runtime fields", async () => {
    const check = await loadModel(smoke, { allowTestModel: true });
    if (!check.ok) throw new Error(check.reason);
    expect(check.manifest.status).toBe("smoke");
    expect(check.manifest.created_utc).toMatch(/^\d{4}-\d\d-\d\dT/);
    for (const m of check.manifest.members) {
      expect(m.input).toMatchObject({ name: "image", channels: 1, height: 64, width: 64 });
      expect(m.input.intensity.scale).toBeCloseTo(1 / 255, 12);
      expect(m.input.intensity.offset).toBe(0);
      expect(m.outputs.map((o) => o.name)).toEqual([
        "logits",
        "tokens_l1",
        "tokens_l2",
        "tokens_l3",
        "tokens_l4",
      ]);
      expect(m.temperature).toBeGreaterThan(0);
    }
    // Unknown fields are kept for whoever reports them (e.g. val metrics).
    expect(check.manifest.members[0]).toHaveProperty("val");
  });

  it("derives the version from the status and the members' sha256s", async () => {
    const check = await loadModel(smoke, { allowTestModel: true });
    if (!check.ok) throw new Error(check.reason);
    const hash = createHash("sha256");
    for (const m of check.manifest.members) hash.update(`${m.sha256}\n`);
    expect(check.version).toBe(`smoke-${hash.digest("hex").slice(0, 12)}`);
    expect(check.version).toMatch(/^smoke-[0-9a-f]{12}$/);
    expect(modelVersion({ ...check.manifest, status: "release" })).toBe(
      check.version.replace("smoke-", "release-"),
    );
  });

  it("gives another version to the same members pooled by another ensemble rule", async () => {
    const plain = await loadModel(smoke, { allowTestModel: true });
    const logMean = await loadModel(
      await tampered((m) => {
        (m.ensemble as Record<string, unknown>).rule = "mean_calibrated_log_probabilities";
      }),
      { allowTestModel: true },
    );
    if (!plain.ok || !logMean.ok) throw new Error("the smoke model was refused");
    expect(logMean.manifest.ensemble.rule).toBe("mean_calibrated_log_probabilities");
    const hash = createHash("sha256");
    for (const m of plain.manifest.members) hash.update(`${m.sha256}\n`);
    hash.update("rule:mean_calibrated_log_probabilities\n");
    expect(logMean.version).toBe(`smoke-${hash.digest("hex").slice(0, 12)}`);
    expect(logMean.version).not.toBe(plain.version);
  });

  it("accepts a candidate model for patients, no switch needed", async () => {
    const dir = await tampered((m) => {
      m.status = "candidate";
    });
    const check = await loadModel(dir);
    expect(check.ok && check.manifest.members.map((m) => m.name)).toEqual(["tiny_a", "tiny_b"]);
  });

  it("refuses a smoke-test model for patients", async () => {
    expect(await loadModel(smoke)).toMatchObject({ ok: false, code: "MODEL_NOT_FOR_PATIENTS" });
    await expect(Ensemble.open({ modelDir: smoke })).rejects.toMatchObject({
      name: "InferenceError",
      code: "MODEL_NOT_FOR_PATIENTS",
    });
  });

  it("says what is missing: the folder, or a member file", async () => {
    const none = join(tmpdir(), "no-such-model-dir");
    expect(await loadModel(none)).toMatchObject({
      ok: false,
      code: "MODEL_MISSING",
      reason: expect.stringContaining("no model manifest"),
    });
    await expect(Ensemble.open({ modelDir: none })).rejects.toBeInstanceOf(InferenceError);
    const dir = await tampered((m) => {
      membersOf(m)[1]!.file = "gone.onnx";
    });
    expect(await loadModel(dir, { allowTestModel: true })).toMatchObject({
      ok: false,
      code: "MODEL_MISSING",
      reason: expect.stringContaining("gone.onnx not found"),
    });
  });

  it("refuses a member whose bytes differ from the manifest", async () => {
    const dir = await tampered(() => {});
    const file = join(dir, "tiny_b.onnx");
    const bytes = await readFile(file);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(file, bytes);
    await expectRefused(dir, "MODEL_INVALID", "member tiny_b: sha256 mismatch");
  });

  it("refuses a member whose input is not the crop shrunk by one whole factor", async () => {
    const resize = (h: number, w: number) =>
      tampered((m) => {
        const input = membersOf(m)[1]!.input as Record<string, unknown>;
        input.height = h;
        input.width = w;
        input.shape = ["batch", 1, h, w];
      });
    for (const [h, w] of [
      [48, 48],
      [32, 16],
    ] as const) {
      expect(await loadModel(await resize(h, w), { allowTestModel: true })).toMatchObject({
        ok: false,
        code: "MODEL_INVALID",
        reason: expect.stringContaining(`input size ${h}x${w} is not the ensemble's crop 64x64`),
      });
    }
    // Half the crop is accepted (the runtime gives that member the crop's 2x2 block means).
    expect(await loadModel(await resize(32, 32), { allowTestModel: true })).toMatchObject({
      ok: true,
    });
  });

  it("carries the localiser's thresholds and template with the model, with defaults", async () => {
    // Without the section: the localiser's defaults (and its bundled template).
    const bare = await tampered((m) => {
      delete m.localiser;
    });
    const plain = await Ensemble.open({ modelDir: bare, allowTestModel: true });
    expect(plain.localiser).toEqual({
      minScore: 0.45,
      pairMinScore: 0.42,
      lowConfidenceScore: 0.6,
      verifierMinProbability: 0.35,
    });
    await plain.close();
    // The toolkit writes the section, with the template beside the members.
    const written = await Ensemble.open({ modelDir: smoke, allowTestModel: true });
    expect(written.localiser).toMatchObject({ minScore: 0.45, pairMinScore: 0.42 });
    expect(written.localiser.template).toMatchObject({ kind: "kneegrade-knee-template" });
    await written.close();
    const template = await readFile(
      new URL("../../knee/assets/knee-template.json", import.meta.url),
    );
    const sha256 = createHash("sha256").update(template).digest("hex");
    const dir = await tampered((m) => {
      m.localiser = {
        min_score: 0.5,
        low_confidence_score: 0.7,
        template: { file: "knee-template.json", sha256 },
      };
    });
    await writeFile(join(dir, "knee-template.json"), template);
    const own = await Ensemble.open({ modelDir: dir, allowTestModel: true });
    expect(own.localiser).toMatchObject({
      minScore: 0.5,
      pairMinScore: 0.42,
      lowConfidenceScore: 0.7,
    });
    expect(own.localiser.template).toMatchObject({ kind: "kneegrade-knee-template" });
    await own.close();
    // The template is checked like a member: present, with its sha256.
    await writeFile(join(dir, "knee-template.json"), "{}");
    await expectRefused(dir, "MODEL_INVALID", "localiser template: sha256 mismatch");
    const outside = await tampered((m) => {
      m.localiser = { template: { file: "../knee-template.json", sha256 } };
    });
    expect(await loadModel(outside, { allowTestModel: true })).toMatchObject({
      ok: false,
      code: "MODEL_INVALID",
    });
  });

  it("refuses manifests the runtime could not use", async () => {
    const cases: [string, (m: Record<string, unknown>) => void, string][] = [
      [
        "no intensity",
        (m) => delete (membersOf(m)[0]!.input as Record<string, unknown>).intensity,
        "intensity",
      ],
      ["no logits", (m) => (membersOf(m)[0]!.outputs = [{ name: "tokens_l1" }]), "logits"],
      ["no token maps", (m) => (membersOf(m)[0]!.outputs = [{ name: "logits" }]), "token maps"],
      ["bad temperature", (m) => (membersOf(m)[0]!.temperature = 0), "temperature"],
      [
        "bad ensemble temperature",
        (m) => ((m.ensemble as Record<string, unknown>).temperature = -1),
        "temperature",
      ],
      [
        "shape vs height",
        (m) => ((membersOf(m)[0]!.input as Record<string, unknown>).height = 65),
        "shape",
      ],
      [
        "escaping path",
        (m) => (membersOf(m)[0]!.file = "../tiny_a.onnx"),
        "inside the model folder",
      ],
      ["duplicate names", (m) => (membersOf(m)[1]!.name = "tiny_a"), "duplicate member name"],
      [
        "unknown ensemble rule",
        (m) => ((m.ensemble as Record<string, unknown>).rule = "majority_vote"),
        "rule",
      ],
      ["no created_utc", (m) => delete m.created_utc, "created_utc"],
      ["schema 2", (m) => (m.schema_version = 2), "schema_version"],
    ];
    for (const [what, edit, reason] of cases) {
      const check = await loadModel(await tampered(edit), { allowTestModel: true });
      expect(check, what).toMatchObject({ ok: false, code: "MODEL_INVALID" });
      expect(!check.ok && check.reason, what).toContain(reason);
    }
  });

  it("refuses an unreadable manifest", async () => {
    const dir = await tampered(() => {});
    await writeFile(join(dir, "manifest.json"), "{ not json");
    expect(await loadModel(dir, { allowTestModel: true })).toMatchObject({
      ok: false,
      code: "MODEL_INVALID",
    });
  });

  it("refuses an ONNX graph whose names differ from the manifest's", async () => {
    const dir = await tampered((m) => {
      (membersOf(m)[0]!.input as Record<string, unknown>).name = "pixels";
    });
    const { logger } = captureLogger();
    await expect(Ensemble.open({ modelDir: dir, allowTestModel: true, logger })).rejects.toThrow(
      /graph has inputs \[image\], the manifest says pixels/,
    );
  });
});
