/**
 * The tree's one-way dependencies: shared packages never import services, services never import
 * each other (they talk through queues), and only the CLI wires services together.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/paths.ts";

const SERVICES = ["listener", "worker", "reporter", "review"];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (name === "generated" || name === "node_modules") return [];
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith(".ts") && !name.endsWith(".test.ts") ? [path] : [];
  });
}

function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/from\s+"(@kneegrade\/[a-z-]+)"/g)].map((m) => m[1]!);
}

it("keeps dependencies one-way", () => {
  const violations: string[] = [];
  for (const pkg of readdirSync(join(REPO_ROOT, "packages"))) {
    if (pkg === "cli") continue;
    for (const file of sources(join(REPO_ROOT, "packages", pkg, "src"))) {
      for (const dep of imports(file)) {
        if (SERVICES.includes(dep.slice("@kneegrade/".length)) || dep === "@kneegrade/cli") {
          violations.push(`${relative(REPO_ROOT, file)} imports ${dep}`);
        }
      }
    }
  }
  for (const service of SERVICES) {
    for (const file of sources(join(REPO_ROOT, "services", service, "src"))) {
      for (const dep of imports(file)) {
        const name = dep.slice("@kneegrade/".length);
        if ((SERVICES.includes(name) && name !== service) || name === "cli") {
          violations.push(`${relative(REPO_ROOT, file)} imports ${dep}`);
        }
      }
    }
  }
  expect(violations).toEqual([]);
  // The check sees the imports it is meant to police.
  expect(imports(join(REPO_ROOT, "packages/cli/src/serve.ts"))).toContain("@kneegrade/listener");
});
