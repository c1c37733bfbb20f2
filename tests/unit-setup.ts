/**
 * Set-up of every unit test file (vitest.config.ts, project "unit"): starting a process — DCMTK,
 * Python, Chromium, Docker — throws, so a unit test cannot lean on a tool that happens to be
 * installed on one machine. PostgreSQL and Redis are pointed at a closed port by the project's env.
 */
import { createRequire, syncBuiltinESMExports } from "node:module";

const require = createRequire(import.meta.url);
const childProcess: Record<string, unknown> = require("node:child_process");

for (const name of ["spawn", "spawnSync", "exec", "execSync", "execFile", "execFileSync", "fork"]) {
  childProcess[name] = (command: unknown) => {
    throw new Error(
      `a unit test may not start a process (${name} ${String(command)}): ` +
        "name the file *.test.ts to make it an integration test",
    );
  };
}
// Named imports (`import { spawn } from "node:child_process"`) see the replacements too.
syncBuiltinESMExports();
