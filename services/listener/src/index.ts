export { assembleStableStudies, enqueuePendingJobs } from "./assembler.ts";
export { type RunningListener, startListener } from "./listener.ts";
export { startRetention, sweepSpool } from "./retention.ts";
