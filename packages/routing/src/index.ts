/** Knee routing: which received instances kneegrade grades (rules over header attributes). */
export * from "./routing.ts";
