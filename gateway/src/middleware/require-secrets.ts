import { createMiddleware } from "hono/factory";
import type { AppEnv, Env } from "../env.ts";
import { ApiError } from "../errors.ts";

/** Secrets the tenant-facing routes need, with the least length that is not a placeholder. */
const required: { name: "URL_SIGNING_KEY" | "BACKEND_SECRET"; minLength: number }[] = [
  { name: "URL_SIGNING_KEY", minLength: 16 },
  // The key every backend's own secret is derived from (auth/backend-credential.ts).
  { name: "BACKEND_SECRET", minLength: 16 },
];

/** Names the secrets that are missing or too short; empty when the gateway can serve. */
export function missingSecrets(env: Env): string[] {
  return required
    .filter(({ name, minLength }) => (env[name] ?? "").length < minLength)
    .map(({ name }) => name);
}

/**
 * Refuses tenant and backend traffic, and backend registration, with a clear 503 while
 * the Worker lacks a secret it needs (instead of signing with, or deriving from, an empty one).
 */
export function requireSecrets() {
  return createMiddleware<AppEnv>(async function requireSecrets(c, next) {
    const missing = missingSecrets(c.env);
    if (missing.length > 0) {
      throw new ApiError(
        503,
        "gateway_misconfigured",
        `The gateway is missing the secret(s) ${missing.join(", ")}`,
      );
    }
    await next();
  });
}
