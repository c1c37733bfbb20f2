export * from "./arthroplasty.ts";
export * from "./crop.ts";
export * from "./find.ts";
export * from "./laterality.ts";
export * from "./localise.ts";
export * from "./localise-thread.ts";
export * from "./verify.ts";
