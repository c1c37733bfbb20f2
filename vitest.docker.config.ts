import { defineConfig } from "vitest/config";

/** `npm run test:docker`: the container stack (tests/docker), apart from `npm test`. */
export default defineConfig({
  test: {
    include: ["tests/docker/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 1_900_000,
  },
});
