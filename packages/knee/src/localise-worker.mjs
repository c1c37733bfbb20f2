// Runs the knee localiser (localise.ts) in a worker thread, so the services' event loop never waits
// on it: onnxruntime-node runs a session synchronously on the calling thread, and the JavaScript
// around it takes tens of milliseconds per radiograph. Plain JavaScript on purpose: Node 20 cannot
// start a .ts file as a worker. In the production image (compiled, no tsx) it loads localise.js and
// verify.js beside it; from the sources it registers tsx and loads the TypeScript. Requests:
// "localise" (localiseKnees) and "verify" (verifyKneeCrops, the second stage, whose onnxruntime run
// is synchronous too).
import { existsSync } from "node:fs";
import { parentPort } from "node:worker_threads";

const compiled = existsSync(new URL("./localise.js", import.meta.url));
if (!compiled) (await import("tsx/esm/api")).register();
const ext = compiled ? "js" : "ts";
const { localiseKnees } = await import(`./localise.${ext}`);
const { verifyKneeCrops } = await import(`./verify.${ext}`);

parentPort.on("message", async ({ id, op, image, options, crops }) => {
  try {
    const result =
      op === "verify" ? await verifyKneeCrops(crops) : await localiseKnees(image, options);
    parentPort.postMessage({ id, ok: true, result });
  } catch (error) {
    parentPort.postMessage({ id, ok: false, message: String(error?.stack ?? error) });
  }
});
