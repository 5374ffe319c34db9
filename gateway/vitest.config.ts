// The gateway's tests run inside the real Workers runtime (workerd through
// Miniflare) with local D1, KV, R2 and the TenantLimiter Durable Object, all
// configured from the repo's wrangler.toml. The real migrations are read here
// and applied by test/setup.ts. `test/peer/global-setup.ts` starts the test peer
// (a tiny OpenAI-shaped HTTP server in Node) that the Worker forwards to.
import { join } from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { testSecrets } from "./test/peer/constants.ts";

const here = import.meta.dirname;

export default defineConfig(async () => {
  const migrations = await readD1Migrations(join(here, "migrations"));
  return {
    root: here,
    plugins: [
      cloudflareTest(({ inject }) => ({
        wrangler: { configPath: join(here, "..", "wrangler.toml") },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            TEST_PEER_URLS: inject<string[]>("peerUrls"),
            ADMIN_TOKEN: testSecrets.adminToken,
            URL_SIGNING_KEY: testSecrets.urlSigningKey,
            BACKEND_SECRET: testSecrets.backendSecret,
          },
        },
      })),
    ],
    test: {
      // test/: through the whole Worker; src/: a middleware on a bare app, next to its code.
      include: ["test/**/*.test.ts", "src/**/*.test.ts"],
      globalSetup: ["test/peer/global-setup.ts"],
      setupFiles: ["test/setup.ts"],
      testTimeout: 30_000,
      // The gateway logs a structured line per request; show logs of failing tests only.
      silent: "passed-only",
    },
  };
});
