/**
 * The worker service (`grade-study` jobs): the service itself (service.ts), one job (job.ts), the
 * preparation threads (prepare-pool.ts) and the service in a thread of its own (thread.ts).
 */
export type { ModelCheck } from "@kneegrade/inference";
export * from "./job.ts";
export {
  type PreparedFile,
  type PreparePool,
  type PrepareSpan,
  startPreparePool,
} from "./prepare-pool.ts";
export { type RunningWorker, startWorker } from "./service.ts";
export { type RunningWorkerThread, startWorkerThread } from "./thread.ts";
