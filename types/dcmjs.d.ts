/**
 * dcmjs ships no type declarations. The parts kneegrade uses are typed where they are used; the
 * module itself is declared loosely here so strict type-checking accepts the import.
 */
declare module "dcmjs" {
  // biome-ignore lint/suspicious/noExplicitAny: untyped third-party module
  const dcmjs: any;
  export default dcmjs;
}
