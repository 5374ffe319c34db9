import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { usageRows } from "../../test/helpers/gateway-client.ts";
import { principalWith, resolvedChatApp, send } from "../../test/helpers/middleware-app.ts";
import type { TenantLimits } from "../auth/principal.ts";
import { usageMeter } from "../usage/usage-meter.ts";
import { limitAdmission } from "./limit-admission.ts";

const usage = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 };

/** A bare app: a resolved chat request of a tenant with `limits`, metered, admitted, answered with `usage`. */
function limited(limits: Partial<TenantLimits>) {
  const principal = principalWith(limits);
  const handled: string[] = [];
  const app = resolvedChatApp(principal, { body: { max_tokens: 5 } });
  app.post("/", usageMeter(), limitAdmission(), (c) => {
    handled.push(c.var.requestId);
    return c.json({ usage });
  });
  const limiter = env.LIMITER.get(env.LIMITER.idFromName(principal.tenantId));
  return { app, tenantId: principal.tenantId, handled, limiter };
}

describe("limitAdmission", () => {
  it("admits within the limit, refuses past it with 429 and Retry-After before the handler", async () => {
    const { app, tenantId, handled } = limited({ requestsPerMinute: 1 });
    expect((await send(app, "/", { headers: { "x-request-id": "first" } })).status).toBe(200);
    const refused = await send(app, "/", { headers: { "x-request-id": "second" } });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe(
      "requests_per_minute",
    );
    expect(handled).toEqual(["first"]);
    expect((await usageRows(tenantId)).map((r) => [r.request_id, r.outcome])).toEqual([
      ["first", "ok"],
      ["second", "rate_limited"],
    ]);
  });

  it("settles the admitted request with the tokens it used, and never a refused one", async () => {
    const { app, limiter } = limited({ tokensPerMinute: 160 });
    // the reservation: the prompt's bound, 143 ("user" + "hello there": 15 bytes, + 2 x 64
    // template tokens), + max_tokens 5 = 148; the answer used 10
    expect((await send(app, "/")).status).toBe(200);
    expect(await limiter.snapshot()).toMatchObject({
      minuteRequests: 1,
      minuteTokens: 10,
      open: {},
    });
    expect((await send(app, "/")).status).toBe(200);
    // 20 used + 148 reserved > 160: refused, and nothing reserved for it
    expect((await send(app, "/")).status).toBe(429);
    expect(await limiter.snapshot()).toMatchObject({
      minuteRequests: 2,
      minuteTokens: 20,
      open: {},
    });
  });

  it("skips the Durable Object for a tenant without limits", async () => {
    const { app, limiter, handled } = limited({});
    expect((await send(app, "/")).status).toBe(200);
    expect(handled).toHaveLength(1);
    expect(await limiter.snapshot()).toMatchObject({ minuteRequests: 0, open: {} });
  });
});
