#!/usr/bin/env node
// The kneegrade CLI. In the production image its TypeScript is compiled (`npm run build`, the
// Dockerfile) and main.js lies beside main.ts's place; from the sources it runs through tsx.
import { existsSync } from "node:fs";

const compiled = new URL("../src/main.js", import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  (await import("tsx/esm/api")).register();
  await import("../src/main.ts");
}
