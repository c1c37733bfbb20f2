export * from "./errors.ts";
export * from "./queues.ts";
