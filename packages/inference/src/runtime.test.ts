/** The ensemble in onnxruntime-node against the smoke model the models/ toolkit built. */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { testModel } from "@kneegrade/test-models";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { upsampleAdd } from "./heatmap.ts";
import { poolProbabilities, sharpen, softmax } from "./pooling.ts";
import { Ensemble } from "./runtime.ts";
import { captureLogger, copyModel, syntheticCrops } from "./test-support.ts";
import type { KneePrediction } from "./types.ts";

interface Fixtures {
  input: { shape: number[]; grey_uint8: number[] };
  members: Record<string, Record<string, { shape: number[]; data: number[] }>>;
  ensemble: { probabilities: number[][]; grades: number[] };
}

const PARITY_ABS = 1e-4;
let dir: string;
let fixtures: Fixtures;
let ensemble: Ensemble;
const quiet = captureLogger().logger;

beforeAll(async () => {
  dir = await testModel("smoke");
  fixtures = JSON.parse(await readFile(join(dir, "fixtures.json"), "utf8")) as Fixtures;
  ensemble = await Ensemble.open({
    modelDir: dir,
    allowTestModel: true,
    intraOpThreads: 1,
    logger: quiet,
  });
});
afterAll(async () => {
  await ensemble?.close();
});

function fixtureCrops(): Uint8Array[] {
  const [n, , h, w] = fixtures.input.shape as [number, number, number, number];
  const grey = Uint8Array.from(fixtures.input.grey_uint8);
  return Array.from({ length: n }, (_, i) => grey.subarray(i * h * w, (i + 1) * h * w));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

describe("poolProbabilities", () => {
  // One member sure of KL0, the other of KL1 with KL0 all but ruled out.
  const a = [0.9, 0.1, 0, 0, 0].map((v) => v + 1e-3);
  const b = [1e-4, 0.6, 0.4, 0, 0].map((v) => v + 1e-3);

  it("averages the probabilities under the mean rule", () => {
    const p = poolProbabilities([a, b], "mean_calibrated_probabilities");
    expect(
      maxAbsDiff(
        p,
        a.map((v, c) => (v + b[c]!) / 2),
      ),
    ).toBeLessThan(1e-15);
    expect(p.indexOf(Math.max(...p))).toBe(0);
  });

  it("takes the normalised geometric mean under the log-mean rule", () => {
    const p = poolProbabilities([a, b], "mean_calibrated_log_probabilities");
    const g = a.map((v, c) => Math.sqrt(v * b[c]!));
    const sum = g.reduce((x, y) => x + y, 0);
    expect(
      maxAbsDiff(
        p,
        g.map((v) => v / sum),
      ),
    ).toBeLessThan(1e-12);
    expect(p.indexOf(Math.max(...p))).toBe(1); // KL0 is vetoed by the second member
  });

  it("refuses no members or members of different lengths", () => {
    expect(() => poolProbabilities([], "mean_calibrated_probabilities")).toThrow(/no member/);
    expect(() => poolProbabilities([a, [0.5, 0.5]], "mean_calibrated_log_probabilities")).toThrow(
      /length 2/,
    );
  });
});

describe("Ensemble", () => {
  it("opens every member from the manifest, with sizes from the manifest", () => {
    expect(ensemble.members).toEqual([
      { name: "tiny_a", provider: "cpu", inputSize: { height: 64, width: 64, channels: 1 } },
      { name: "tiny_b", provider: "cpu", inputSize: { height: 64, width: 64, channels: 1 } },
    ]);
    expect(ensemble.inputSize).toEqual({ height: 64, width: 64 });
    expect(ensemble.version).toMatch(/^smoke-[0-9a-f]{12}$/);
    expect(ensemble.manifest.status).toBe("smoke");
  });

  it("matches PyTorch (fixtures.json) on every output of every member", async () => {
    const raw = await ensemble.runRaw(fixtureCrops());
    expect(raw.map((r) => r.name).sort()).toEqual(Object.keys(fixtures.members).sort());
    let worst = 0;
    for (const member of raw) {
      const expected = fixtures.members[member.name]!;
      expect(Object.keys(member.outputs).sort()).toEqual(Object.keys(expected).sort());
      for (const [name, ref] of Object.entries(expected)) {
        const got = member.outputs[name]!;
        expect(got.dims, `${member.name}.${name}`).toEqual(ref.shape);
        const diff = maxAbsDiff(got.data, ref.data);
        expect(diff, `${member.name}.${name}`).toBeLessThanOrEqual(PARITY_ABS);
        worst = Math.max(worst, diff);
      }
    }
    console.info(`parity vs PyTorch: max abs diff ${worst.toExponential(2)} (limit ${PARITY_ABS})`);
  });

  it("matches the fixtures' ensemble probabilities and grades", async () => {
    const predictions = await ensemble.predict(fixtureCrops());
    expect(predictions.map((p) => p.grade)).toEqual(fixtures.ensemble.grades);
    predictions.forEach((p, i) => {
      expect(maxAbsDiff(p.probabilities, fixtures.ensemble.probabilities[i]!)).toBeLessThanOrEqual(
        PARITY_ABS,
      );
      expect(p.label).toBe(`KL${p.grade}`);
      // Each member: calibrated probabilities of its own logits; the ensemble is their mean.
      for (const m of p.members) {
        const t = ensemble.manifest.members.find((x) => x.name === m.name)!.temperature;
        expect(maxAbsDiff(m.probabilities, softmax(m.logits, t))).toBeLessThan(1e-12);
        expect(m.provider).toBe("cpu");
      }
      const mean = p.probabilities.map(
        (_, c) => p.members.reduce((s, m) => s + m.probabilities[c]!, 0) / p.members.length,
      );
      const t = ensemble.manifest.ensemble.temperature ?? 1;
      expect(maxAbsDiff(p.probabilities, sharpen(mean, t))).toBeLessThan(1e-12);
      expect(p.probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 10);
    });
  });

  it("applies the manifest's ensemble temperature to the mean, keeping the grades", async () => {
    const sharper = await Ensemble.open({
      modelDir: await copyModel(dir, (m) => {
        (m.ensemble as Record<string, unknown>).temperature = 0.5;
      }),
      allowTestModel: true,
      intraOpThreads: 1,
      logger: quiet,
    });
    try {
      const crops = [...fixtureCrops(), ...syntheticCrops(3, 64, 64, 11)];
      const [plain, sharp] = [await ensemble.predict(crops), await sharper.predict(crops)];
      sharp.forEach((p, i) => {
        const q = plain[i]!.probabilities;
        const sq = q.map((v) => v * v);
        const z = sq.reduce((a, b) => a + b, 0);
        expect(
          maxAbsDiff(
            p.probabilities,
            sq.map((v) => v / z),
          ),
        ).toBeLessThan(1e-9);
        expect(p.grade).toBe(plain[i]!.grade);
        expect(Math.max(...p.probabilities)).toBeGreaterThanOrEqual(Math.max(...q));
      });
    } finally {
      await sharper.close();
    }
  });

  it("pools by the manifest's log-mean rule: softmax of the members' mean log-probability", async () => {
    const logMean = await Ensemble.open({
      modelDir: await copyModel(dir, (m) => {
        Object.assign(m.ensemble as Record<string, unknown>, {
          rule: "mean_calibrated_log_probabilities",
          temperature: 0.7,
        });
      }),
      allowTestModel: true,
      intraOpThreads: 1,
      logger: quiet,
    });
    try {
      expect(logMean.version).not.toBe(ensemble.version);
      const crops = [...fixtureCrops(), ...syntheticCrops(3, 64, 64, 12)];
      for (const p of await logMean.predict(crops)) {
        // Recomputed from the members' logits: softmax(mean_m(logits_m / T_m) / T).
        const z = p.probabilities.map(
          (_, c) =>
            p.members.reduce((s, m) => {
              const t = logMean.manifest.members.find((x) => x.name === m.name)!.temperature;
              return s + m.logits[c]! / t;
            }, 0) /
            p.members.length /
            0.7,
        );
        expect(maxAbsDiff(p.probabilities, softmax(z))).toBeLessThan(1e-9);
        expect(p.grade).toBe(p.probabilities.indexOf(Math.max(...p.probabilities)));
      }
    } finally {
      await logMean.close();
    }
  });

  it("gives the same results whatever the batch size", async () => {
    const crops = [...fixtureCrops(), ...syntheticCrops(5, 64, 64, 7)];
    const runs: KneePrediction[][] = [];
    for (const maxBatch of [1, 2, crops.length]) {
      const e = await Ensemble.open({
        modelDir: dir,
        allowTestModel: true,
        maxBatch,
        logger: quiet,
      });
      const { predictions, timings } = await e.predictTimed(crops);
      expect(timings.batches.map((b) => b.size)).toEqual(
        maxBatch === 1 ? [1, 1, 1, 1, 1, 1, 1] : maxBatch === 2 ? [2, 2, 2, 1] : [crops.length],
      );
      for (const b of timings.batches) {
        expect(b.members.map((m) => m.name)).toEqual(["tiny_a", "tiny_b"]);
        for (const m of b.members) expect(m.ms).toBeGreaterThan(0);
      }
      expect(timings.totalMs).toBeGreaterThan(0);
      runs.push(predictions);
      await e.close();
    }
    const [one, ...others] = runs as [KneePrediction[], ...KneePrediction[][]];
    for (const other of others) {
      expect(other.map((p) => p.grade)).toEqual(one.map((p) => p.grade));
      other.forEach((p, i) => {
        const q = one[i]!;
        expect(maxAbsDiff(p.probabilities, q.probabilities)).toBeLessThan(1e-6);
        p.members.forEach((m, j) => {
          expect(maxAbsDiff(m.logits, q.members[j]!.logits)).toBeLessThan(1e-5);
        });
        expect(maxAbsDiff(p.heatmap.data, q.heatmap.data)).toBeLessThan(1e-4);
      });
    }
  });

  it("takes float crops on the 0-255 scale as it takes 8-bit ones", async () => {
    const e = await Ensemble.open({ modelDir: dir, allowTestModel: true, logger: quiet });
    const bytes = syntheticCrops(3, 64, 64, 5);
    const asBytes = await e.predict(bytes);
    const asFloats = await e.predict(bytes.map((c) => Float32Array.from(c)));
    asFloats.forEach((p, i) => {
      expect(p.grade).toBe(asBytes[i]!.grade);
      expect(maxAbsDiff(p.probabilities, asBytes[i]!.probabilities)).toBe(0);
    });
    // A half-grey step matters: floats are not rounded to bytes on the way in.
    const shifted = await e.predict([Float32Array.from(bytes[0]!, (v) => v + 0.5)]);
    expect(
      maxAbsDiff(shifted[0]!.members[0]!.logits, asBytes[0]!.members[0]!.logits),
    ).toBeGreaterThan(0);
    await e.close();
  });

  it("rejects bad input with a clear error", async () => {
    const [good] = syntheticCrops(1, 64, 64);
    await expect(ensemble.predict([good!, new Uint8Array(224 * 224)])).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: "crop 1: expected 4096 bytes (64x64 8-bit grey, row-major), got 50176",
    });
    await expect(
      ensemble.predict([new Uint16Array(4096) as unknown as Uint8Array]),
    ).rejects.toThrow(/crop 0: expected a Uint8Array \(8-bit grey\) or a Float32Array/);
    await expect(ensemble.predict("nope" as unknown as Uint8Array[])).rejects.toThrow(/array/);
    expect(await ensemble.predict([])).toEqual([]);
  });

  it("refuses bad options", async () => {
    await expect(
      Ensemble.open({ modelDir: dir, allowTestModel: true, maxBatch: 0, logger: quiet }),
    ).rejects.toThrow(/maxBatch/);
    await expect(
      Ensemble.open({ modelDir: dir, allowTestModel: true, providers: [], logger: quiet }),
    ).rejects.toThrow(/providers/);
  });

  it("refuses to predict once closed", async () => {
    const e = await Ensemble.open({ modelDir: dir, allowTestModel: true, logger: quiet });
    const running = e.predict(syntheticCrops(3, 64, 64));
    await e.close();
    expect(await running).toHaveLength(3); // close waited for it
    await expect(e.predict(syntheticCrops(1, 64, 64))).rejects.toMatchObject({ code: "CLOSED" });
    await e.close();
  });
});

describe("provider fallback", () => {
  /** Opens the smoke model with these providers; the log lines it wrote come back beside it. */
  const openWith = (providers: string[]) => {
    const { logger, lines } = captureLogger();
    return {
      opened: Ensemble.open({ modelDir: dir, allowTestModel: true, providers, logger }),
      lines,
    };
  };

  it("falls back past a provider that does not exist, with a warning per member", async () => {
    const { opened, lines } = openWith(["no-such-ep", "cpu"]);
    const e = await opened;
    expect(e.members.map((m) => m.provider)).toEqual(["cpu", "cpu"]);
    const warnings = lines.filter((l) => l.event === "inference.provider-unavailable");
    expect(warnings).toHaveLength(2);
    for (const w of warnings) {
      expect(w).toMatchObject({ level: 40, provider: "no-such-ep" });
      expect(w.reason).toEqual(expect.stringContaining("no-such-ep"));
    }
    expect(warnings.map((w) => w.member)).toEqual(["tiny_a", "tiny_b"]);
    expect(await e.predict(fixtureCrops())).toHaveLength(2);
    await e.close();
  });

  it("uses webgpu where it works and falls back to the CPU where it does not", async () => {
    const { opened, lines } = openWith(["webgpu", "cpu"]);
    const e = await opened;
    const warned = lines
      .filter((l) => l.event === "inference.provider-unavailable" && l.provider === "webgpu")
      .map((l) => l.member);
    for (const m of e.members) {
      expect(["webgpu", "cpu"]).toContain(m.provider);
      // On a machine without a GPU adapter (CI): cpu, and a warning saying why.
      expect(warned.includes(m.name)).toBe(m.provider === "cpu");
    }
    const predictions = await e.predict(fixtureCrops());
    expect(predictions.map((p) => p.grade)).toEqual(fixtures.ensemble.grades);
    await e.close();
  });

  it("fails clearly when no provider in the list works", async () => {
    const { opened } = openWith(["no-such-ep", "neither"]);
    await expect(opened).rejects.toMatchObject({ name: "InferenceError", code: "NO_PROVIDER" });
    await expect(opened).rejects.toThrow(
      /member tiny_a: none of the execution providers \[no-such-ep, neither\] could create a session/,
    );
  });
});

describe("heat map", () => {
  it("has the input size, values in 0..1 spanning the range, one per knee", async () => {
    const crops = syntheticCrops(3, 64, 64, 3);
    const predictions = await ensemble.predict(crops);
    for (const { heatmap } of predictions) {
      expect(heatmap.width).toBe(64);
      expect(heatmap.height).toBe(64);
      expect(heatmap.data).toBeInstanceOf(Float32Array);
      expect(heatmap.data.length).toBe(64 * 64);
      let lo = Number.POSITIVE_INFINITY;
      let hi = Number.NEGATIVE_INFINITY;
      for (const v of heatmap.data) {
        expect(Number.isFinite(v)).toBe(true);
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      expect(lo).toBe(0);
      expect(hi).toBeCloseTo(1, 6);
    }
  });

  it("is the percentile-scaled mean of the upsampled per-token grade probabilities", async () => {
    const crops = syntheticCrops(2, 64, 64, 11);
    const [predictions, raw] = await Promise.all([ensemble.predict(crops), ensemble.runRaw(crops)]);
    predictions.forEach((p, i) => {
      // Reference: a plain per-pixel bilinear interpolation (PyTorch align_corners=False).
      const mean = new Float64Array(64 * 64);
      let maps = 0;
      for (const r of raw) {
        for (const [name, { dims, data }] of Object.entries(r.outputs)) {
          if (!name.startsWith("tokens_")) continue;
          const [, k, h, w] = dims as [number, number, number, number];
          const logit = (c: number, y: number, x: number) => data[((i * k + c) * h + y) * w + x]!;
          const at = (y: number, x: number) => {
            let total = 0;
            for (let c = 0; c < k; c++) total += Math.exp(logit(c, y, x));
            return Math.exp(logit(p.grade, y, x)) / total;
          };
          for (let Y = 0; Y < 64; Y++) {
            const sy = Math.max(0, ((Y + 0.5) * h) / 64 - 0.5);
            const y0 = Math.floor(sy);
            const y1 = Math.min(y0 + 1, h - 1);
            for (let X = 0; X < 64; X++) {
              const sx = Math.max(0, ((X + 0.5) * w) / 64 - 0.5);
              const x0 = Math.floor(sx);
              const x1 = Math.min(x0 + 1, w - 1);
              const top = at(y0, x0) * (1 - (sx - x0)) + at(y0, x1) * (sx - x0);
              const bottom = at(y1, x0) * (1 - (sx - x0)) + at(y1, x1) * (sx - x0);
              mean[Y * 64 + X]! += top * (1 - (sy - y0)) + bottom * (sy - y0);
            }
          }
          maps++;
        }
      }
      expect(maps).toBe(8); // 2 members x 4 levels
      const sorted = Array.from(mean, (v) => v / maps).sort((a, b) => a - b);
      const lo = sorted[Math.round(0.02 * (sorted.length - 1))]!;
      const hi = sorted[Math.round(0.98 * (sorted.length - 1))]!;
      const expected = Array.from(mean, (v) =>
        Math.min(1, Math.max(0, (v / maps - lo) / (hi - lo))),
      );
      expect(maxAbsDiff(p.heatmap.data, expected)).toBeLessThan(1e-4);
    });
  });

  it("upsamples like PyTorch's bilinear interpolate (align_corners=False)", () => {
    const acc = new Float32Array(16);
    upsampleAdd(Float32Array.from([1, 2, 3, 4]), 0, 2, 2, acc, 4, 4);
    // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4),
    //                                 mode="bilinear", align_corners=False)
    expect(Array.from(acc)).toEqual([
      1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4,
    ]);
  });
});
