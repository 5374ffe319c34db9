import { createApp, createGatewayState } from "./app.ts";
import type { Env } from "./env.ts";
import { checkBackends } from "./health/check-backends.ts";
import { type UsageMessage, writeUsageBatch } from "./usage/usage-queue.ts";

export { BatchRunner } from "./batches/batch-runner.ts";
export { TenantLimiter } from "./limits/tenant-limiter.ts";

const state = createGatewayState();
const app = createApp(state);

export default {
  fetch: app.fetch,
  scheduled(_controller, env, ctx) {
    ctx.waitUntil(checkBackends(env, state.backends));
  },
  async queue(batch, env) {
    await writeUsageBatch(env.DB, batch as MessageBatch<UsageMessage>);
  },
} satisfies ExportedHandler<Env>;
