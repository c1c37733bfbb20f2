/**
 * A `*.unit.test.ts` file runs in parallel with no set-up (vitest.config.ts, project "unit"), so it
 * may use nothing outside its process. tests/unit-setup.ts stops processes at run time; this test
 * catches what a run might not: the shared data set and the test model (present on one machine,
 * absent on the next), the integration helpers, and clients of PostgreSQL and Redis.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/paths.ts";

/** Modules whose value imports mean a service or a process. */
const WORLD_MODULES = [
  "@kneegrade/db",
  "pg",
  "ioredis",
  "playwright-core",
  "node:child_process",
  "child_process",
];

/** Names and calls that reach the world; the message says what each needs. */
const WORLD_USES: [RegExp, string][] = [
  [/\b(testModel|openTestModel)\b/, "the test model (built with Python)"],
  [/\b(SHARED_DATA|WG04_DIR|WG04_FILES|PYDICOM_TEST_FILES|REALDX_DIR)\b/, "../shared/data"],
  [/shared\/data/, "../shared/data"],
  [/\bnew\s+(Queue|Worker|QueueEvents|Redis)\s*\(/, "Redis"],
  [/\b(createDb|createQueue|startHarness|testConfig|resetDb)\s*\(/, "PostgreSQL or Redis"],
];

/** tests/helpers/paths.ts names the repository; every other helper starts or reaches something. */
const PURE_HELPERS = ["paths.ts"];

function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (name === "node_modules") return [];
    if (statSync(path).isDirectory()) return testFiles(path);
    return name.endsWith(".test.ts") ? [path] : [];
  });
}

/** Unit test files under packages/*\/src, services/*\/src and tests/, as vitest.config.ts finds them. */
function unitTestFiles(): string[] {
  const roots = [
    ...["packages", "services"].flatMap((top) =>
      readdirSync(join(REPO_ROOT, top)).map((name) => join(REPO_ROOT, top, name, "src")),
    ),
    join(REPO_ROOT, "tests"),
  ];
  return roots
    .filter((root) => statSync(root, { throwIfNoEntry: false })?.isDirectory())
    .flatMap(testFiles)
    .filter((file) => file.endsWith(".unit.test.ts"));
}

function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

/** Why the file at `path` is not a unit test; empty when it is one. */
function worldUses(path: string, text: string): string[] {
  const code = withoutComments(text);
  const problems: string[] = [];
  for (const m of code.matchAll(/^\s*import\s+(type\s+)?[^"']*?from\s+"([^"]+)"/gm)) {
    const [, typeOnly, spec] = m;
    if (typeOnly) continue;
    if (WORLD_MODULES.includes(spec!)) problems.push(`${path} imports ${spec}`);
    const helper = /(?:^|\/)helpers\/([^/]+)$/.exec(spec!);
    if (helper && !PURE_HELPERS.includes(helper[1]!)) problems.push(`${path} imports ${spec}`);
  }
  for (const [pattern, needs] of WORLD_USES) {
    const hit = pattern.exec(code);
    if (hit) problems.push(`${path} uses ${hit[0].trim()}: needs ${needs}`);
  }
  return problems;
}

it("keeps unit test files off services, tools, the shared data and the test model", () => {
  // This file names what it polices.
  const files = unitTestFiles().filter((file) => file !== fileURLToPath(import.meta.url));
  expect(files.length).toBeGreaterThan(10);
  const problems = files.flatMap((file) =>
    worldUses(relative(REPO_ROOT, file), readFileSync(file, "utf8")),
  );
  expect(problems, "rename such a file to *.test.ts (integration) or make it pure").toEqual([]);
});

it("sees what it is meant to police", () => {
  const read = (path: string) => worldUses(path, readFileSync(join(REPO_ROOT, path), "utf8"));
  expect(read("packages/inference/src/runtime.test.ts").join("\n")).toMatch(/testModel/);
  expect(read("packages/ops/src/server.test.ts").join("\n")).toMatch(/new Queue\(/);
  expect(read("tests/integration/ops.test.ts").join("\n")).toMatch(/helpers\/env\.ts/);
  expect(worldUses("x", 'import { spawn } from "node:child_process";')).toHaveLength(1);
  expect(worldUses("x", 'import type { Db } from "@kneegrade/db";')).toEqual([]);
  expect(worldUses("x", "// values from /work/shared/data/knee-kl\n")).toEqual([]);
});
