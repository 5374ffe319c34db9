import { constantTimeEqual } from "../crypto.ts";
import type { Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import { retryD1 } from "../storage/d1-retry.ts";
import { backendClaim, backendCredential } from "./backend-credential.ts";

/**
 * The id of the registered backend whose current secret is in `authorization`
 * (`Bearer <id>.v<version>.<mac>`, see backend-credential.ts); otherwise a 401. The
 * whole secret is compared in constant time with the one derived for the id and version
 * it claims, so a backend's secret cannot claim another id, and one of an older version
 * (rotated) or of a removed backend is refused.
 */
export async function authenticateBackend(env: Env, authorization: string | undefined) {
  const token = /^Bearer (\S+)$/.exec(authorization ?? "")?.[1];
  if (token === undefined) {
    throw new ApiError(
      401,
      "backend_credential_required",
      "Send the backend's secret (its --backend-secret) as `Authorization: Bearer <secret>`",
    );
  }
  const claim = backendClaim(token);
  const valid =
    claim !== null &&
    (await currentVersion(env.DB, claim.id)) === claim.version &&
    (await constantTimeEqual(
      token,
      await backendCredential(env.BACKEND_SECRET, claim.id, claim.version),
    ));
  if (!valid) {
    throw new ApiError(
      401,
      "invalid_backend_credential",
      "This is not the current secret of a registered backend",
    );
  }
  return claim.id;
}

async function currentVersion(db: D1Database, backendId: string): Promise<number | null> {
  const row = await retryD1(() =>
    db
      .prepare(
        "SELECT c.version FROM backend_credentials c JOIN backends b ON b.id = c.backend_id WHERE c.backend_id = ?",
      )
      .bind(backendId)
      .first<{ version: number }>(),
  );
  return row?.version ?? null;
}
