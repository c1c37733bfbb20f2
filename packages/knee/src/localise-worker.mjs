// Runs the knee localiser (localise.ts) in a worker thread, so the services' event loop never waits
// on it: onnxruntime-node runs a session synchronously on the calling thread, and the JavaScript
// around it takes tens of milliseconds per radiograph. Plain JavaScript on purpose: Node 20 cannot
// start a .ts file as a worker, so this registers tsx (which the CLI runs on anyway) and then loads
// the TypeScript localiser. One request at a time; the parent (localise-thread.ts) queues them.
import { parentPort } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
const { localiseKnees } = await import("./localise.ts");

parentPort.on("message", async ({ id, image, options }) => {
  try {
    const result = await localiseKnees(image, options);
    parentPort.postMessage({ id, ok: true, result });
  } catch (error) {
    parentPort.postMessage({ id, ok: false, message: String(error?.stack ?? error) });
  }
});
