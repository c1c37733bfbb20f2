import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["packages/*/src/**/*.test.ts", "services/*/src/**/*.test.ts", "tests/**/*.test.ts"],
    // The container stack test builds images: `npm run test:docker` (vitest.docker.config.ts);
    // the viewer test runs OHIF in Chromium: `npm run test:viewer` (vitest.viewer.config.ts).
    exclude: ["**/node_modules/**", "tests/docker/**", "tests/viewer/**"],
    // Integration tests share one PostgreSQL database, one Redis and fixed DICOM ports.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    globalSetup: ["tests/global-setup.ts"],
  },
});
