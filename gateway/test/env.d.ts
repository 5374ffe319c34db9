import type { D1Migration } from "cloudflare:test";
import type { Env } from "../src/env.ts";

declare global {
  namespace Cloudflare {
    interface Env extends import("../src/env.ts").Env {
      TEST_MIGRATIONS: D1Migration[];
      /** [the test peer's base URL, a URL where nothing listens]. */
      TEST_PEER_URLS: [string, string];
    }
  }
}

declare module "vitest" {
  interface ProvidedContext {
    peerUrls: [string, string];
  }
}

export type { Env };
