import type { D1Migration } from "cloudflare:test";
import type { Env as GatewayEnv } from "../src/env.ts";

declare global {
  namespace Cloudflare {
    interface Env extends GatewayEnv {
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
