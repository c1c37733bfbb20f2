// Runs the knee localiser (localise.ts) in a worker thread, so the services' event loop never waits
// on it: onnxruntime-node runs a session synchronously on the calling thread, and the JavaScript
// around it takes tens of milliseconds per radiograph. Plain JavaScript on purpose: Node 20 cannot
// start a .ts file as a worker, so this registers tsx (which the CLI runs on anyway) and then loads
// the TypeScript localiser. Requests: "localise" (localiseKnees) and "verify" (verifyKneeCrops,
// the second stage, whose onnxruntime run is synchronous too).
import { parentPort } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
const { localiseKnees } = await import("./localise.ts");
const { verifyKneeCrops } = await import("./verify.ts");

parentPort.on("message", async ({ id, op, image, options, crops }) => {
  try {
    const result =
      op === "verify" ? await verifyKneeCrops(crops) : await localiseKnees(image, options);
    parentPort.postMessage({ id, ok: true, result });
  } catch (error) {
    parentPort.postMessage({ id, ok: false, message: String(error?.stack ?? error) });
  }
});
