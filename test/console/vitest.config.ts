import { defineConfig } from "vitest/config";

// The console's browser (Playwright + Debian's Chromium) and CLI tests, against one
// stack started in globalSetup: wrangler dev + the real backend on CPU. Files run one
// at a time (2 cores); each uses tenants of its own, so their order does not matter.
export default defineConfig({
  test: {
    root: import.meta.dirname,
    include: ["**/*.test.ts"],
    exclude: ["**/node_modules/**"],
    globalSetup: ["global-setup.ts"],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 180_000,
  },
});
