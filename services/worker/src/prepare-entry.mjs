// A preparation thread of the worker service (prepare-pool.ts starts it, prepare-main.ts runs in
// it). Plain JavaScript on purpose: Node 20 cannot start a .ts file as a worker. In the production
// image (compiled, no tsx) it loads prepare-main.js beside it; from the sources it registers tsx
// and loads the TypeScript.
import { existsSync } from "node:fs";

const compiled = existsSync(new URL("./prepare-main.js", import.meta.url));
if (!compiled) (await import("tsx/esm/api")).register();
await import(`./prepare-main.${compiled ? "js" : "ts"}`);
