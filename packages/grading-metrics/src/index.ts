export * from "./charts.ts";
export * from "./metrics.ts";
