import { defineConfig } from "vitest/config";

/**
 * `npm run test:viewer`: kneegrade's SRs in a real viewer (tests/viewer: OHIF, Orthanc with
 * DICOMweb, Chromium), apart from `npm test`. Needs no database or Redis.
 */
export default defineConfig({
  test: {
    include: ["tests/viewer/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 400_000,
    // The first run fetches the viewer (≈ 50 MB) with npm.
    hookTimeout: 900_000,
  },
});
