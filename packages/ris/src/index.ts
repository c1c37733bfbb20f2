/**
 * The result in the RIS: a study result (the AI's, or a radiologist's signed revision) as a FHIR R4
 * transaction and as an HL7 v2.5.1 ORU^R01 over MLLP, and their deliveries in the reporter's
 * outbox. docs/INTEGRATION.md shows both messages.
 */
export * from "./deliver.ts";
export * from "./fhir.ts";
export * from "./hl7.ts";
export * from "./reach.ts";
export * from "./result.ts";
