/**
 * `kneegrade grade` and `kneegrade evaluate` as an operator runs them, with a test model exported by
 * the models/ toolkit; `evaluate` against the toolkit's own `python3 -m models.evaluate`: the same
 * figures in the same document (@kneegrade/contracts `evaluationDocument`).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { evaluationDocument } from "@kneegrade/contracts";
import { composeBilateral, radiographDicom } from "@kneegrade/sample-radiographs";
import { testModel } from "@kneegrade/test-models";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI } from "../helpers/cli.ts";
import { REPO_ROOT, SHARED_DATA } from "../helpers/paths.ts";

const run = promisify(execFile);
const VAL = `${SHARED_DATA}knee-kl/val`;

async function kneegrade(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, LOG_LEVEL: "warn", ALLOW_TEST_MODEL: "0" },
      maxBuffer: 32 * 2 ** 20,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("kneegrade grade / evaluate", () => {
  let modelDir: string;
  let work: string;
  let bilateral: string;
  const withTestModel = (...args: string[]) =>
    kneegrade([...args, "--model-dir", modelDir, "--allow-test-model"]);

  beforeAll(async () => {
    modelDir = await testModel("test");
    work = await mkdtemp(join(tmpdir(), "kneegrade-cli-"));
    const r = await composeBilateral([`${VAL}/0/9034812R.png`, `${VAL}/4/9511862R.png`]);
    bilateral = join(work, "bilateral.dcm");
    await writeFile(bilateral, radiographDicom(r, { photometric: "MONOCHROME1" }));
  }, 300_000);
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it("prints both knees of a bilateral DICOM with laterality, grade and probabilities", async () => {
    const json = await withTestModel("grade", bilateral, "--json");
    expect(json.code, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout);
    expect(doc.model).toMatchObject({ status: "smoke", testModel: true });
    expect(doc.notices.join(" ")).toMatch(/unverified/);
    expect(doc.notices.join(" ")).toMatch(/TEST MODEL/);
    const [file] = doc.results;
    expect(file).toMatchObject({ kind: "dicom", outcome: "GRADED" });
    expect(file.knees.map((k: { laterality: string }) => k.laterality)).toEqual(["R", "L"]);
    for (const k of file.knees) {
      expect(k.grade).toBe(k.probabilities.indexOf(Math.max(...k.probabilities)));
      expect(k.probabilities.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 4);
      expect(k.region.sideMm).toBeGreaterThan(75);
    }

    const table = await withTestModel("grade", bilateral);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/right/);
    expect(table.stdout).toMatch(/left/);
    expect(table.stdout).toMatch(/TEST MODEL/);
    expect(table.stdout).toMatch(/Device-generated result, unverified/);
  }, 60_000);

  it("grades image files as crops, and says why a file could not be graded", async () => {
    const junk = join(work, "junk.dcm");
    await writeFile(junk, "this is not DICOM");
    const crop = `${VAL}/2/9023348R.png`;
    const r = await withTestModel("grade", crop, junk, "--json");
    expect(r.code).toBe(1); // a file failed
    const doc = JSON.parse(r.stdout);
    expect(doc.results[0]).toMatchObject({ kind: "image", outcome: "GRADED" });
    expect(doc.results[0].knees[0].laterality).toBe("U");
    expect(doc.results[1]).toMatchObject({ kind: "dicom", outcome: "FAILED" });
    expect(doc.results[1].reason).toBeTruthy();
  }, 60_000);

  it("refuses a test model unless asked, and a missing model, with exit status 2", async () => {
    const smoke = await kneegrade(["grade", bilateral, "--model-dir", modelDir]);
    expect(smoke.code).toBe(2);
    expect(smoke.stderr).toMatch(/no usable model: .*smoke/);
    const missing = await kneegrade(["grade", bilateral, "--model-dir", join(work, "none")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no usable model/);
  }, 60_000);

  it("evaluates a <grade>/*.png folder with the same figures as python3 -m models.evaluate", async () => {
    const pngDir = join(work, "charts");
    const node = await withTestModel("evaluate", VAL, "--json", "--png-dir", pngDir);
    expect(node.code, node.stderr).toBe(0);
    const oursDoc = evaluationDocument.parse(JSON.parse(node.stdout));
    const ours = oursDoc.results.ensemble;
    const out = join(work, "eval");
    await run(
      "/usr/bin/python3",
      ["-m", "models.evaluate", "--data", VAL, "--models", modelDir, "--out", out],
      {
        cwd: REPO_ROOT,
        maxBuffer: 32 * 2 ** 20,
      },
    );
    // Both evaluators write the one schema: every key known, none missing.
    const theirsDoc = evaluationDocument.parse(
      JSON.parse(await readFile(join(out, "eval.json"), "utf8")),
    );
    const theirs = theirsDoc.results.ensemble;
    expect(Object.keys(oursDoc.results)).toEqual(["ensemble"]);
    expect(Object.keys(theirsDoc.results).length).toBeGreaterThan(1); // the members too
    expect(oursDoc.labels).toEqual(theirsDoc.labels);
    expect(oursDoc.status).toBe(theirsDoc.status);
    expect(oursDoc.model?.status).toBe("smoke");
    expect(ours.temperature).toBe(theirs.temperature);
    expect(ours.n).toBe(826);
    expect(ours.n).toBe(theirs.n);
    expect(ours.confusion).toEqual(theirs.confusion);
    expect(ours.rule).toBe(theirs.rule); // the same ensemble rule, read from the manifest
    expect(oursDoc.model?.rule).toBe(theirs.rule);
    expect(ours.accuracy).toBeCloseTo(theirs.accuracy, 10);
    expect(ours.qwk).toBeCloseTo(theirs.qwk, 10);
    expect(ours.mae).toBeCloseTo(theirs.mae, 10);
    expect(ours.per_grade_accuracy).toEqual(theirs.per_grade_accuracy);
    // Calibration of the ensemble's probabilities (float64 here, float32 in the toolkit).
    // Measured gap 8.3e-7: the two runtimes' float32 resize and inference differ in the last bits.
    expect(Math.abs(ours.ece - theirs.ece)).toBeLessThan(1e-5);
    expect(ours.ece).toBeGreaterThan(0);
    expect(ours.reliability).toHaveLength(10);
    expect(ours.reliability.reduce((a: number, b: { n: number }) => a + b.n, 0)).toBe(ours.n);
    expect(ours.reliability.map((b: { n: number }) => b.n)).toEqual(
      theirs.reliability.map((b: { n: number }) => b.n),
    );
    ours.reliability.forEach(
      (b: { lo: number; hi: number; accuracy: number | null }, i: number) => {
        expect(b.lo).toBe(theirs.reliability[i]!.lo);
        expect(b.hi).toBe(theirs.reliability[i]!.hi);
        if (b.accuracy === null) expect(theirs.reliability[i]!.accuracy).toBeNull();
        else expect(b.accuracy).toBeCloseTo(theirs.reliability[i]!.accuracy!, 10);
      },
    );
    // The figures: real PNGs of a useful size.
    expect(oursDoc.png).toEqual({
      confusion: join(pngDir, "confusion.png"),
      reliability: join(pngDir, "reliability.png"),
    });
    for (const name of ["confusion.png", "reliability.png"]) {
      const bytes = await readFile(join(pngDir, name));
      expect(bytes.subarray(0, 8)).toEqual(
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      );
      const meta = await sharp(bytes).metadata();
      expect(meta.format).toBe("png");
      expect(meta.width).toBeGreaterThan(100);
      expect(meta.height).toBeGreaterThan(100);
    }
    // The test model learned something, so agreeing is not agreeing on a constant.
    expect(
      new Set(ours.confusion.map((row: number[]) => row.indexOf(Math.max(...row)))).size,
    ).toBeGreaterThan(1);
  }, 180_000);

  it("names the PNGs it wrote in the text output of evaluate --png-dir", async () => {
    const pngDir = join(work, "charts-text");
    const r = await withTestModel("evaluate", VAL, "--limit-per-grade", "2", "--png-dir", pngDir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/n 10 {2}accuracy [\d.]+ {2}QWK -?[\d.]+ {2}MAE [\d.]+ {2}ECE [\d.]+/);
    expect(r.stdout).toContain(
      `wrote ${join(pngDir, "confusion.png")} and ${join(pngDir, "reliability.png")}`,
    );
    expect((await sharp(join(pngDir, "reliability.png")).metadata()).width).toBeGreaterThan(100);
  }, 60_000);
});
