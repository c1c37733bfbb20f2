/**
 * Test models, built by the models/ toolkit itself (pack → train → export → manifest → fixtures) so
 * the Node side is always tested against what the toolkit really produces. They carry status
 * "smoke": tests open them with `allowTestModel`, the product never does.
 *
 * Cached under var/test-models/<config>-<hash>, where the hash covers the toolkit's sources and the
 * config, so a change to the toolkit rebuilds them.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { REPO_ROOT, SHARED_DATA } from "./paths.ts";

const PYTHON = process.env.KNEEGRADE_PYTHON ?? "/usr/bin/python3";

/**
 * smoke: two tiny 64-px members on 3 crops per grade (seconds): for contracts and parity.
 * test: the same members on up to 170 crops per grade for a few epochs (under a minute): its grades
 * depend on the knee, so pipeline tests can compare grades.
 */
/**
 * The toolkit plans epochs to fit its time limit; the limit here is far above what the configs'
 * epochs need, so every build trains all of its config's epochs and gives the same model on a
 * busy machine as on an idle one (a budget cut short on a loaded machine can leave the test model
 * predicting one grade for every knee, and the tests that compare grades fail).
 */
const NO_TIME_LIMIT_S = "36000";
export const TEST_MODELS = {
  smoke: { config: "models/configs/smoke.json", perGrade: 3, sets: [] as string[] },
  test: { config: "models/configs/test.json", perGrade: 170, sets: [] as string[] },
} as const;
export type TestModelName = keyof typeof TEST_MODELS;

function toolkitHash(name: TestModelName): string {
  const spec = TEST_MODELS[name];
  const hash = createHash("sha256").update(JSON.stringify(spec)).update(NO_TIME_LIMIT_S);
  const dir = join(REPO_ROOT, "models");
  for (const file of readdirSync(dir).sort()) {
    if (file.endsWith(".py")) hash.update(file).update(readFileSync(join(dir, file)));
  }
  hash.update(readFileSync(join(REPO_ROOT, spec.config)));
  return hash.digest("hex").slice(0, 12);
}

/** The folder of a built test model (manifest.json, *.onnx, fixtures.json); builds it if needed. */
export async function testModel(name: TestModelName = "smoke"): Promise<string> {
  const spec = TEST_MODELS[name];
  const root = join(REPO_ROOT, "var", "test-models");
  const dir = join(root, `${name}-${toolkitHash(name)}`);
  if (existsSync(join(dir, "manifest.json"))) return dir;
  const work = `${dir}.building-${process.pid}`;
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    execFileSync(PYTHON, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: "pipe",
      maxBuffer: 64 * 2 ** 20,
    });
  run([
    "-m",
    "models.pack",
    "--data",
    join(SHARED_DATA, "knee-kl"),
    "--out",
    join(work, "pack"),
    "--limit-per-grade",
    String(spec.perGrade),
  ]);
  run(
    [
      "-m",
      "models.gpu_run",
      "--config",
      spec.config,
      "--pack-dir",
      join(work, "pack"),
      "--work",
      join(work, "work"),
      "--status",
      "smoke",
      "--time-limit-s",
      NO_TIME_LIMIT_S,
      ...spec.sets.flatMap((s) => ["--set", s]),
    ],
    { OUT: join(work, "out") },
  );
  await rm(dir, { recursive: true, force: true });
  await rename(join(work, "out"), dir);
  await mkdir(join(dir, "checkpoints"), { recursive: true });
  for (const file of readdirSync(join(work, "work"))) {
    if (file.endsWith(".pt"))
      await rename(join(work, "work", file), join(dir, "checkpoints", file));
  }
  await rm(work, { recursive: true, force: true });
  return dir;
}
