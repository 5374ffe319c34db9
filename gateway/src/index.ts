import { createApp, createGatewayState } from "./app.ts";
import type { Env } from "./env.ts";
import { checkBackends } from "./health/check-backends.ts";

export { BatchRunner } from "./batches/batch-runner.ts";
export { TenantLimiter } from "./limits/tenant-limiter.ts";

const state = createGatewayState();
const app = createApp(state);

export default {
  fetch: app.fetch,
  scheduled(_controller, env, ctx) {
    ctx.waitUntil(checkBackends(env, state.backends));
  },
} satisfies ExportedHandler<Env>;
