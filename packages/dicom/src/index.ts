export * from "./files.ts";
export * from "./header.ts";
export * from "./part10.ts";
export * from "./routing.ts";
export * from "./scu.ts";
export * from "./status.ts";
export * from "./uids.ts";
