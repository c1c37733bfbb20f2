/**
 * Test models built by the models/ toolkit itself (pack, train, export, manifest, fixtures) for
 * the tests and the demo: status "smoke", never opened by the product for a patient.
 */
export * from "./test-model.ts";
