import { createMiddleware } from "hono/factory";
import { constantTimeEqual } from "../crypto.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { hashApiKey, looksLikeApiKey } from "./api-key.ts";
import type { KeyResolver } from "./key-resolver.ts";
import type { Scope } from "./principal.ts";

function bearer(header: string | undefined): string {
  const match = header?.match(/^Bearer\s+(\S+)$/i);
  if (!match?.[1]) {
    throw new ApiError(
      401,
      "missing_api_key",
      "Send your API key as `Authorization: Bearer lf_live_...`",
    );
  }
  return match[1];
}

/**
 * Resolves the caller's API key to a Principal and checks it has `scope`
 * (a key with the `admin` scope has every scope of its tenant); `null` admits
 * any valid key of an active tenant (`GET /v1/me`).
 */
export function apiKeyAuth(
  resolver: KeyResolver,
  scope: Scope | null,
  now: () => number = Date.now,
) {
  return createMiddleware<AppEnv>(async function apiKeyAuth(c, next) {
    const secret = bearer(c.req.header("authorization"));
    const invalid = () => new ApiError(401, "invalid_api_key", "Incorrect API key provided");
    if (!looksLikeApiKey(secret)) throw invalid();
    const principal = await resolver.resolve(c.env, await hashApiKey(secret));
    if (principal === null) throw invalid();
    if (principal.expiresAt !== null && principal.expiresAt <= now()) {
      throw new ApiError(401, "expired_api_key", "This API key has expired");
    }
    if (principal.tenantStatus !== "active") {
      throw new ApiError(403, "tenant_suspended", `Tenant ${principal.tenantName} is suspended`);
    }
    if (
      scope !== null &&
      !principal.scopes.includes(scope) &&
      !principal.scopes.includes("admin")
    ) {
      throw new ApiError(403, "insufficient_scope", `This API key lacks the \`${scope}\` scope`);
    }
    c.set("principal", principal);
    const touch = resolver.touch(c.env, principal.keyId);
    if (touch !== null) c.executionCtx.waitUntil(touch);
    await next();
  });
}

/** The operator's admin API: `Authorization: Bearer <ADMIN_TOKEN secret>`. */
export function adminAuth() {
  return createMiddleware<AppEnv>(async function adminAuth(c, next) {
    const token = bearer(c.req.header("authorization"));
    const expected = c.env.ADMIN_TOKEN;
    if (!expected || expected.length < 16) {
      throw new ApiError(
        503,
        "admin_disabled",
        "ADMIN_TOKEN is not set (or shorter than 16 characters)",
      );
    }
    if (!(await constantTimeEqual(token, expected))) {
      throw new ApiError(401, "invalid_admin_token", "Incorrect admin token");
    }
    await next();
  });
}
