import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { waitForUsageRows } from "../../test/helpers/gateway-client.ts";
import { principalWith, resolvedChatApp, send } from "../../test/helpers/middleware-app.ts";
import type { TenantLimits } from "../auth/principal.ts";
import { usageMeter } from "../usage/usage-meter.ts";
import { limitAdmission } from "./limit-admission.ts";
import { SliceLimiter } from "./slice-limiter.ts";

const usage = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 };

/** A bare app: a resolved chat request of a tenant with `limits`, metered, admitted, answered with `usage`. */
function limited(limits: Partial<TenantLimits>) {
  const principal = principalWith(limits);
  const handled: string[] = [];
  const app = resolvedChatApp(principal, { body: { max_tokens: 5 } });
  // the isolate's slices: one SliceLimiter per app, as one per isolate
  app.post("/", usageMeter(), limitAdmission(new SliceLimiter()), (c) => {
    handled.push(c.get("requestId"));
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
    expect((await waitForUsageRows(tenantId, 2)).map((r) => [r.request_id, r.outcome])).toEqual([
      ["first", "ok"],
      ["second", "rate_limited"],
    ]);
  });

  it("spends a slice of tokens per minute locally, gives unused tokens back to it, and returns the rest when it renews", async () => {
    const { app, limiter } = limited({ tokensPerMinute: 160 });
    // the reservation: the prompt's bound, 143 ("user" + "hello there": 15 bytes, + 2 x 64
    // template tokens), + max_tokens 5 = 148; the answer used 10. The slice: the larger of
    // 148 and 1/8 of the 160 left. The empty slice is topped up in the background by 1/8 of
    // the 12 left: 1.
    expect((await send(app, "/")).status).toBe(200);
    expect(await limiter.snapshot()).toMatchObject({ minuteTokens: 149, open: {} });
    // 139 left in the slice: renewing returns them (10 used) and takes 148 more (the top-up
    // finds 2 left: a slice of 0)
    expect((await send(app, "/")).status).toBe(200);
    expect(await limiter.snapshot()).toMatchObject({ minuteTokens: 158, open: {} });
    // 20 used + 148 > 160: refused, after the remainder came back
    expect((await send(app, "/")).status).toBe(429);
    expect(await limiter.snapshot()).toMatchObject({ minuteTokens: 20, open: {} });
  });

  it("reserves and settles each request of a tenant with a monthly quota on the Durable Object", async () => {
    const { app, limiter } = limited({ monthlyTokenQuota: 1000 });
    expect((await send(app, "/")).status).toBe(200);
    expect(await limiter.snapshot()).toMatchObject({
      minuteRequests: 1,
      monthTokens: 10,
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
