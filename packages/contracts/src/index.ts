export * from "./queues.ts";
