/**
 * Import rules checked by `npm run lint` (dependency-cruiser). Workspace packages resolve to their
 * sources (packages/x/src), so a cycle through a package's index is found as well as one between
 * two files of a package. Type-only imports count: a cycle of types still ties the modules'
 * meaning together and makes each harder to read alone.
 */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment:
        "Modules import one another one way only: split the shared part into its own module.",
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^|/)(node_modules|generated|dist|build|var)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    combinedDependencies: false,
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
      extensions: [".ts", ".mts", ".js", ".mjs", ".cjs", ".json"],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
