import type { Context, Next } from "hono";
import { afterEach, describe, expect, it, vi } from "vitest";
import { waitForUsageRows } from "../../test/helpers/gateway-client.ts";
import { principalWith, resolvedChatApp, send } from "../../test/helpers/middleware-app.ts";
import { ApiError } from "../errors.ts";
import type { TokenUsage } from "../proxy/metered-stream.ts";
import { type UsageEnv, usageMeter } from "./usage-meter.ts";

const t0 = 1_800_000_000_000;
const usage = {
  prompt_tokens: 7,
  completion_tokens: 3,
  total_tokens: 10,
  prompt_tokens_details: { cached_tokens: 4 },
};
const sse = (events: object[]) =>
  `${events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join("")}data: [DONE]\n\n`;
const chunk = (text: string) => ({ choices: [{ index: 0, delta: { content: text } }] });

/** A bare app: a resolved chat request of its own tenant, the meter (clock at t0 + 25 ms), then `handler`. */
function metered(handler: (c: Context<UsageEnv>) => Response | Promise<Response>) {
  const principal = principalWith();
  const ended: TokenUsage[] = [];
  const app = resolvedChatApp(principal, { startedAt: t0 });
  app.post(
    "/",
    usageMeter({ now: () => t0 + 25 }),
    async (c, next) => {
      c.get("usage").onEnd((tokens) => {
        ended.push(tokens);
      });
      await next();
    },
    handler,
  );
  return { app, tenantId: principal.tenantId, ended };
}

describe("usageMeter", () => {
  const logged = vi.spyOn(console, "log").mockImplementation(() => {});
  afterEach(() => logged.mockClear());
  const requestLines = () =>
    logged.mock.calls
      .map(([line]) => JSON.parse(String(line)))
      .filter((l) => l.event === "request");

  it("records an answer's usage, status and backend once, then tells the listeners", async () => {
    const { app, tenantId, ended } = metered((c) => {
      c.set("backendId", "gpu-7");
      return c.json({ choices: [], usage });
    });
    const response = await send(app, "/", { headers: { "x-request-id": "meter-ok" } });
    expect(await response.json()).toEqual({ choices: [], usage });
    expect(await waitForUsageRows(tenantId, 1)).toMatchObject([
      {
        request_id: "meter-ok",
        backend_id: "gpu-7",
        status: 200,
        outcome: "ok",
        prompt_tokens: 7,
        completion_tokens: 3,
        cached_tokens: 4,
        endpoint: "/v1/chat/completions",
        model: "m",
        latency_ms: 25,
      },
    ]);
    expect(ended).toEqual([{ promptTokens: 7, completionTokens: 3, cachedTokens: 4 }]);
    expect(requestLines()).toMatchObject([
      { requestId: "meter-ok", outcome: "ok", keyId: expect.any(String) },
    ]);
  });

  it("records a backend's refusal as invalid, with no tokens when it carries no usage", async () => {
    const { app, tenantId, ended } = metered((c) => c.text("bad", 400));
    expect((await send(app, "/")).status).toBe(400);
    expect(await waitForUsageRows(tenantId, 1)).toMatchObject([
      { status: 400, outcome: "invalid", prompt_tokens: 0, completion_tokens: 0, backend_id: null },
    ]);
    expect(ended).toEqual([{ promptTokens: 0, completionTokens: 0, cachedTokens: 0 }]);
  });

  it("records an error thrown after it by the status the client got", async () => {
    const cases: [Error, number, string][] = [
      [new ApiError(429, "requests_per_minute", "slow down"), 429, "rate_limited"],
      [new ApiError(503, "no_backend_available", "none"), 503, "backend_error"],
      [new Error("a bug"), 500, "backend_error"],
    ];
    vi.spyOn(console, "error").mockImplementationOnce(() => {});
    for (const [error, status, outcome] of cases) {
      const { app, tenantId, ended } = metered(() => {
        throw error;
      });
      expect((await send(app, "/")).status).toBe(status);
      expect(await waitForUsageRows(tenantId, 1)).toMatchObject([
        { status, outcome, prompt_tokens: 0 },
      ]);
      expect(ended).toHaveLength(1);
    }
  });

  it("meters an event stream as it passes, dropping the usage event the client did not ask for", async () => {
    const { app, tenantId, ended } = metered((c) => {
      c.set("backendId", "gpu-1");
      return c.body(sse([chunk("a"), chunk("b"), { choices: [], usage }]), 200, {
        "content-type": "text/event-stream",
      });
    });
    const text = await (await send(app, "/")).text();
    expect(text).toBe(sse([chunk("a"), chunk("b")]));
    expect(await waitForUsageRows(tenantId, 1)).toMatchObject([
      {
        backend_id: "gpu-1",
        status: 200,
        outcome: "ok",
        prompt_tokens: 7,
        completion_tokens: 3,
        cached_tokens: 4,
      },
    ]);
    expect(ended).toEqual([{ promptTokens: 7, completionTokens: 3, cachedTokens: 4 }]);
  });

  it("bills a stream cut short by the usage so far of the last event relayed, hiding it from a client that did not ask", async () => {
    // the backend's chunks carry the usage so far (continuous_usage_stats, which the gateway asks for)
    const soFar = (completion: number) => ({
      prompt_tokens: 7,
      completion_tokens: completion,
      total_tokens: 7 + completion,
    });
    const { app, tenantId } = metered((c) =>
      c.body(
        `data: ${JSON.stringify({ ...chunk("a"), usage: soFar(1) })}\n\ndata: ${JSON.stringify({ ...chunk("b"), usage: soFar(2) })}\n\n`,
        200,
        { "content-type": "text/event-stream" },
      ),
    );
    const text = await (await send(app, "/")).text();
    expect(text).toBe(
      `data: ${JSON.stringify(chunk("a"))}\n\ndata: ${JSON.stringify(chunk("b"))}\n\n`,
    );
    expect(await waitForUsageRows(tenantId, 1)).toMatchObject([
      { outcome: "ok", prompt_tokens: 7, completion_tokens: 2 },
    ]);
  });

  it("shows a client that asked for the final usage `usage: null` in the other chunks, and bills nothing for a stream that carried no usage", async () => {
    const { app, tenantId } = metered((c) =>
      c.body(`data: ${JSON.stringify({ ...chunk("a"), usage: usage })}\n\n`, 200, {
        "content-type": "text/event-stream",
      }),
    );
    const asked = await send(app, "/", {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ stream: true, stream_options: { include_usage: true } }),
    });
    expect(await asked.text()).toBe(`data: ${JSON.stringify({ ...chunk("a"), usage: null })}\n\n`);
    const { app: bare, tenantId: bareTenant } = metered((c) =>
      c.body(`data: ${JSON.stringify(chunk("a"))}\n\n`, 200, {
        "content-type": "text/event-stream",
      }),
    );
    await send(bare, "/");
    expect(await waitForUsageRows(tenantId, 1)).toMatchObject([
      { prompt_tokens: 7, completion_tokens: 3 },
    ]);
    expect(await waitForUsageRows(bareTenant, 1)).toMatchObject([
      { outcome: "ok", prompt_tokens: 0, completion_tokens: 0 },
    ]);
  });

  it("records a client that leaves before the answer as 499 client_disconnect, once", async () => {
    const leave = new AbortController();
    const { app, tenantId, ended } = metered(async (c) => {
      // as forwardWithFailover does: the aborted call finds no backend
      await new Promise((resolve) => c.req.raw.signal.addEventListener("abort", resolve));
      throw new ApiError(503, "no_backend_available", "none");
    });
    const sent = send(app, "/", { signal: leave.signal });
    await new Promise((resolve) => setTimeout(resolve, 20));
    leave.abort();
    await sent.catch(() => {});
    expect(await waitForUsageRows(tenantId, 1)).toMatchObject([
      { status: 499, outcome: "client_disconnect", prompt_tokens: 0, backend_id: null },
    ]);
    expect(ended).toEqual([{ promptTokens: 0, completionTokens: 0, cachedTokens: 0 }]);
    expect(requestLines()).toHaveLength(1);
  });

  it("runs a listener that comes after the end at once", async () => {
    const late: TokenUsage[] = [];
    const app = resolvedChatApp(principalWith());
    app.post(
      "/",
      // outside the meter: it registers once the meter has ended the request
      async (c: Context<UsageEnv>, next: Next) => {
        await next();
        c.get("usage").onEnd((tokens) => {
          late.push(tokens);
        });
      },
      usageMeter(),
      (c) => c.json({ usage }),
    );
    await send(app, "/");
    expect(late).toEqual([{ promptTokens: 7, completionTokens: 3, cachedTokens: 4 }]);
  });
});
