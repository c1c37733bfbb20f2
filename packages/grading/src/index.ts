/**
 * One radiograph from its Part 10 bytes to graded knees, shared by the worker service,
 * `kneegrade grade`/`evaluate` and the demo: decode → localise → crop → predict.
 */
export * from "./grade.ts";
export * from "./predictor.ts";
