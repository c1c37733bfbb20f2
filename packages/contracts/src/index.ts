export * from "./evaluation.ts";
export * from "./queues.ts";
