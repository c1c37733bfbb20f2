/**
 * The GPU benchmark's pack, built and run here on the CPU: it must stay under 60 MiB and run with
 * the node it carries alone (no tsx, no node_modules), falling back cleanly where WebGPU has no
 * adapter. The measured GPU run itself needs a GPU machine (docs/PERFORMANCE.md, "GPU").
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { testModel } from "@kneegrade/test-models";
import { afterAll, expect, it } from "vitest";
import { REPO_ROOT } from "../helpers/paths.ts";

const run = promisify(execFile);
const pack = join(REPO_ROOT, "var", `gpu-pack-test-${process.pid}`);
let out: string | undefined;

afterAll(async () => {
  await rm(pack, { recursive: true, force: true });
  if (out) await rm(out, { recursive: true, force: true });
});

it("packs node, onnxruntime-node and the bundled benchmark in under 60 MiB, and runs them", async () => {
  await run("bash", ["tests/bench/gpu/pack.sh", "--no-gl", "--out", pack], { cwd: REPO_ROOT });
  const files = ["node-ort.tar.xz", "bench.mjs", "run.sh"];
  let total = 0;
  for (const f of files) total += (await stat(join(pack, f))).size;
  expect(total).toBeLessThan(60 * 2 ** 20);

  out = await mkdtemp(join(tmpdir(), "kneegrade-gpu-out-"));
  const model = await testModel("smoke");
  const { stdout } = await run(
    "bash",
    [
      join(pack, "run.sh"),
      "--model-dir",
      model,
      "--allow-test-model",
      "--seconds",
      "0.2",
      "--batches",
      "1,4",
      "--jobs",
      "4",
    ],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, OUT: out, PATH: "/usr/bin:/bin" },
      maxBuffer: 2 ** 24,
    },
  );
  expect(stdout).toMatch(/\| cpu \| 4 \|/);
  const result = JSON.parse(await readFile(join(out, "gpu-bench.json"), "utf8"));
  expect(result.baseline).toBe("cpu");
  expect(result.rows.filter((r: { provider: string }) => r.provider === "cpu")).toHaveLength(2);
  // The micro-batcher comparison ran too: concurrent jobs direct vs batched, on the same provider.
  expect(result.batcher).toContainEqual(expect.objectContaining({ provider: "cpu", jobs: 4 }));
  for (const b of result.batcher) expect(b.direct * b.batched).toBeGreaterThan(0);
  for (const r of result.rows) {
    expect(r.kneesPerSecond).toBeGreaterThan(0);
    expect(r.p95Ms).toBeGreaterThanOrEqual(r.p50Ms);
  }
  // Here WebGPU has no adapter: reported, not fatal. On the GPU machine it is measured instead.
  if (result.unavailable.webgpu) {
    expect(result.unavailable.webgpu).toMatch(/webgpu/);
  } else {
    expect(result.maxAbsProbabilityDiff.webgpu).toBeLessThan(1e-4);
  }
}, 300_000);
