import { defineConfig } from "vitest/config";

// End-to-end suites: real server processes, the real Python executor on CPU. Files run
// one at a time (each starts its own backend; the CI machine has 2 cores).
export default defineConfig({
  test: {
    root: import.meta.dirname,
    include: ["**/*.test.ts"],
    // test/console has its own config (browser + global set-up) and runner entry.
    exclude: ["**/node_modules/**", "console/**"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
