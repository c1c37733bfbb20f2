/**
 * A study revision's report objects, from the grading results in PostgreSQL to durable files in
 * the spool: the AI's SR (and SC, text SR), a radiologist's signed SR, and redelivery of what was
 * written. The reporter service delivers them; `kneegrade redeliver` and the demo use them too.
 */
export * from "./dcmjs-log.ts";
export * from "./redeliver.ts";
export * from "./report.ts";
export * from "./signed.ts";
