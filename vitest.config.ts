import { defineConfig } from "vitest/config";

// The container stack test builds images: `npm run test:docker` (vitest.docker.config.ts);
// the viewer test runs OHIF in Chromium: `npm run test:viewer` (vitest.viewer.config.ts).
const ELSEWHERE = ["**/node_modules/**", "tests/docker/**", "tests/viewer/**"];
const ROOTS = ["packages/*/src/**/", "services/*/src/**/", "tests/**/"];

/**
 * Three projects, told apart by the file name: `*.unit.test.ts` needs nothing outside its process —
 * no PostgreSQL, Redis, Orthanc, DCMTK, Python, Chromium, ../shared/data or test model — so those
 * files run in parallel with no set-up (`npm run test:unit`); `*.slow.test.ts` (the fuzzer,
 * scale-out, soak: minutes each) is the "slow" project (`npm run test:slow`); every other
 * `*.test.ts` is an integration test (`npm run test:integration`). tests/test-tiers.unit.test.ts
 * and tests/unit-setup.ts hold unit files to that. `vitest run` (in `npm test`) runs all three
 * once, in that order.
 */

/** Integration and slow tests share one PostgreSQL database, one Redis and fixed DICOM ports. */
const WITH_SERVICES = {
  fileParallelism: false,
  testTimeout: 60_000,
  hookTimeout: 120_000,
  globalSetup: ["tests/global-setup.ts"],
};

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ROOTS.map((root) => `${root}*.unit.test.ts`),
          exclude: ELSEWHERE,
          setupFiles: ["tests/unit-setup.ts"],
          // A closed port: a unit test that reaches for a database or Redis fails at once, even on
          // a machine where they run.
          env: {
            DATABASE_URL: "postgresql://unit-test@127.0.0.1:1/none",
            TEST_DATABASE_URL: "postgresql://unit-test@127.0.0.1:1/none",
            REDIS_URL: "redis://127.0.0.1:1",
            TEST_REDIS_URL: "redis://127.0.0.1:1",
          },
          testTimeout: 20_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "integration",
          include: ROOTS.map((root) => `${root}*.test.ts`),
          exclude: [...ELSEWHERE, "**/*.unit.test.ts", "**/*.slow.test.ts"],
          ...WITH_SERVICES,
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: "slow",
          include: ROOTS.map((root) => `${root}*.slow.test.ts`),
          exclude: ELSEWHERE,
          ...WITH_SERVICES,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
