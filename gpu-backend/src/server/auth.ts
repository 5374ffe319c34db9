// The shared secret between the gateway and this backend: `authorization: Bearer <secret>`,
// compared in constant time. With a secret configured every /v1 and /internal route
// needs it; without one, /v1 is open (local use) and gateway-only features are refused.
import { timingSafeEqual } from "node:crypto";
import { createMiddleware } from "hono/factory";
import { ApiError } from "./openai-error.ts";

function bearerMatches(header: string | undefined, secret: string): boolean {
  const match = /^Bearer (.+)$/.exec(header ?? "");
  if (!match?.[1]) return false;
  const given = Buffer.from(match[1]);
  const expected = Buffer.from(secret);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** @example app.use("/v1/*", requireSecret(secret, { optional: true })) */
export function requireSecret(secret: string | null, options: { optional: boolean }) {
  return createMiddleware(async function requireBackendSecret(c, next) {
    if (secret === null) {
      if (options.optional) return next();
      throw new ApiError(401, "this endpoint needs the backend secret, which is not configured", {
        type: "authentication_error",
        code: "secret_not_configured",
      });
    }
    if (!bearerMatches(c.req.header("authorization"), secret)) {
      throw new ApiError(401, "Incorrect API key provided.", {
        type: "authentication_error",
        code: "invalid_api_key",
      });
    }
    return next();
  });
}
