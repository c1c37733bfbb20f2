export { assembleStableStudies, enqueuePendingJobs, reconcileGradingJobs } from "./assembler.ts";
export { type RunningListener, startListener } from "./listener.ts";
export { startRetention, sweepSpool } from "./retention.ts";
