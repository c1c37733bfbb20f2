/**
 * Sample studies and models made from the shared data, for the demo and the tests (never for
 * patients): radiographs composed from real knee crops, written as DICOM, and the smoke/test models
 * built by the models/ toolkit.
 */
export * from "./clinical-look.ts";
export { mulberry32 } from "./draw.ts";
export * from "./foot.ts";
export * from "./paths.ts";
export * from "./prosthesis.ts";
export * from "./radiograph-dicom.ts";
export * from "./radiographs.ts";
