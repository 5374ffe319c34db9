import { defineConfig } from "vitest/config";

// The CPU smoke suite of bench/: unit tests of the workload, client and plots,
// the Python GPU scripts at --smoke shapes, and the `smoke` scenario end to end
// against the real backend server with the tiny model.
export default defineConfig({
  test: {
    root: import.meta.dirname,
    include: ["src/**/*.test.ts", "tests/**/*.test.ts", "gateway/**/*.test.ts"],
    testTimeout: 90_000,
  },
});
