// The worker service in a worker thread (`kneegrade serve`, SERVE_WORKER_THREAD): thread.ts starts
// it, thread-main.ts runs in it. Plain JavaScript on purpose: Node 20 cannot start a .ts file as a
// worker. In the production image (compiled, no tsx) it loads thread-main.js beside it; from the
// sources it registers tsx and loads the TypeScript.
import { existsSync } from "node:fs";

const compiled = existsSync(new URL("./thread-main.js", import.meta.url));
if (!compiled) (await import("tsx/esm/api")).register();
await import(`./thread-main.${compiled ? "js" : "ts"}`);
