import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { createApp, createGatewayState } from "../../src/app.ts";
import { origin } from "./gateway-client.ts";

/** An isolate of its own: a separate app with its own caches and a clock the test moves. */
export function isolate(start: number) {
  const clock = { now: start };
  const app = createApp(createGatewayState(() => clock.now));
  const fetch = async (path: string, key: string, init: RequestInit = {}) => {
    const ctx = createExecutionContext();
    const res = await app.fetch(
      new Request(`${origin}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${key}`, ...init.headers },
      }),
      env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    return res;
  };
  return { clock, fetch };
}
