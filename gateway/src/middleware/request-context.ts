import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env.ts";
import { newId } from "../ids.ts";

const clientIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Gives every request a label (the client's `x-request-id` when it is sane, else
 * a new UUID), echoed on the response and sent on to the backend, and a key of the
 * gateway's own (`requestKey`) that usage and limits are kept by; stamps
 * `x-lorafleet-gateway-ms`: wall time in the gateway minus time spent waiting
 * for a backend's response headers, so the gateway's overhead is measured.
 * For a stream the header is written when the backend's headers arrive.
 */
export function requestContext(now: () => number = Date.now) {
  return createMiddleware<AppEnv>(async function requestContext(c, next) {
    const offered = c.req.header("x-request-id");
    const requestId = offered && clientIdPattern.test(offered) ? offered : crypto.randomUUID();
    c.set("requestId", requestId);
    c.set("requestKey", newId("req_"));
    c.set("startedAt", now());
    c.set("upstreamMs", 0);
    await next();
    c.res.headers.set("x-request-id", requestId);
    const gatewayMs = now() - c.get("startedAt") - c.get("upstreamMs");
    c.res.headers.set("x-lorafleet-gateway-ms", String(Math.max(0, gatewayMs)));
  });
}
