/**
 * The tree's one-way dependencies: shared packages never import services, services never import
 * each other (they talk through queues), the CLI imports a service only to start it
 * (`kneegrade serve`, serve.ts), no product code uses the sample packages, and infra/ imports no
 * service and nothing from tests/.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/paths.ts";

const SERVICES = ["listener", "worker", "reporter", "review"];
/** Demo and test material: composed radiographs and the toolkit-built test models. */
const SAMPLES = ["sample-radiographs", "test-models"];

/** Tests and the test-support modules beside them (never exported by a package's index). */
function isTestCode(name: string): boolean {
  return name.endsWith(".test.ts") || name === "test-support.ts";
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (name === "generated" || name === "node_modules") return [];
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(ts|mjs)$/.test(name) && !isTestCode(name) ? [path] : [];
  });
}

function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/from\s+"(@kneegrade\/[a-z-]+)"/g)].map((m) => m[1]!);
}

/** Relative imports that leave the file's top-level folder for tests/. */
function testImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/(?:from\s+|import\s*\(?\s*)"([^"]*\/tests\/[^"]*)"/g)].map(
    (m) => m[1]!,
  );
}

/** The only file of the CLI that may import services: it starts them. */
const SERVE = "packages/cli/src/serve.ts";

it("keeps dependencies one-way", () => {
  const violations: string[] = [];
  for (const pkg of readdirSync(join(REPO_ROOT, "packages"))) {
    for (const file of sources(join(REPO_ROOT, "packages", pkg, "src"))) {
      const path = relative(REPO_ROOT, file);
      for (const dep of imports(file)) {
        const name = dep.slice("@kneegrade/".length);
        if ((SERVICES.includes(name) && path !== SERVE) || (name === "cli" && pkg !== "cli")) {
          violations.push(`${path} imports ${dep}`);
        }
        if (SAMPLES.includes(name) && !SAMPLES.includes(pkg))
          violations.push(`${path} imports ${dep}`);
      }
      for (const dep of testImports(file)) violations.push(`${path} imports ${dep}`);
    }
  }
  for (const service of SERVICES) {
    for (const file of sources(join(REPO_ROOT, "services", service, "src"))) {
      for (const dep of imports(file)) {
        const name = dep.slice("@kneegrade/".length);
        if (
          (SERVICES.includes(name) && name !== service) ||
          name === "cli" ||
          SAMPLES.includes(name)
        ) {
          violations.push(`${relative(REPO_ROOT, file)} imports ${dep}`);
        }
      }
      for (const dep of testImports(file))
        violations.push(`${relative(REPO_ROOT, file)} imports ${dep}`);
    }
  }
  for (const file of sources(join(REPO_ROOT, "infra"))) {
    const path = relative(REPO_ROOT, file);
    for (const dep of imports(file)) {
      if (SERVICES.includes(dep.slice("@kneegrade/".length)))
        violations.push(`${path} imports ${dep}`);
    }
    for (const dep of testImports(file)) violations.push(`${path} imports ${dep}`);
  }
  for (const top of ["packages", "services"]) {
    for (const name of readdirSync(join(REPO_ROOT, top))) {
      for (const file of sources(join(REPO_ROOT, top, name, "src"))) {
        if (/from\s+"[^"]*test-support(\.ts)?"/.test(readFileSync(file, "utf8")))
          violations.push(`${relative(REPO_ROOT, file)} imports test support`);
      }
    }
  }
  expect(violations).toEqual([]);
  // The check sees the imports it is meant to police.
  expect(imports(join(REPO_ROOT, SERVE))).toContain("@kneegrade/listener");
  expect(testImports(join(REPO_ROOT, "packages/knee/src/localise.test.ts")).length).toBeGreaterThan(
    0,
  );
});

/** Bare module specifiers a file imports (packages, not node: built-ins or relative paths). */
function packageImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)"([^".][^"]*)"/g)]
    .map((m) => m[1]!)
    .filter((s) => !s.startsWith("node:"))
    .map((s) =>
      s
        .split("/")
        .slice(0, s.startsWith("@") ? 2 : 1)
        .join("/"),
    );
}

/**
 * Run-time fallbacks of the development tree, installed at the root: the CLI and the localiser's
 * worker thread load TypeScript through tsx when no compiled JavaScript lies beside them.
 */
const ROOT_ONLY = new Set(["tsx"]);

it("declares every package a workspace imports in its package.json", () => {
  const missing: string[] = [];
  for (const top of ["packages", "services"]) {
    for (const name of readdirSync(join(REPO_ROOT, top))) {
      const dir = join(REPO_ROOT, top, name);
      const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
      const declared = new Set(Object.keys(manifest.dependencies ?? {}));
      for (const file of sources(join(dir, "src"))) {
        for (const dep of packageImports(file)) {
          if (dep !== manifest.name && !declared.has(dep) && !ROOT_ONLY.has(dep)) {
            missing.push(`${relative(REPO_ROOT, file)}: ${dep}`);
          }
        }
      }
    }
  }
  expect([...new Set(missing)]).toEqual([]);
  // The scan sees what it checks.
  expect(packageImports(join(REPO_ROOT, SERVE))).toContain("@kneegrade/listener");
});
