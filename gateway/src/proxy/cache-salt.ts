import type { Principal } from "../auth/principal.ts";
import { hmacTag } from "../hmac.ts";

/** Whose requests may share a backend's cached KV: one API key's, or (opted in) a whole tenant's. */
export type CacheScope = Pick<Principal, "tenantId" | "keyId" | "sharePrefixCache">;

/**
 * The prefix cache's salt a backend gets in `lorafleet.cache_salt`: only requests with the
 * same salt share cached KV pages, and a prefix cache is a timing side channel (vLLM
 * CVE-2025-46570: a hit answers sooner, and `cached_tokens` says so outright). So the
 * salt is the gateway's alone (a client's `lorafleet` is replaced, never read), and it is
 * one per API key unless the tenant opted in to sharing: a key learns nothing of another
 * tenant's prompts, nor of its own tenant's other keys'. It is an HMAC-SHA256 under
 * BACKEND_SECRET (a label of its own, so it never equals a backend credential's MAC), so
 * nobody without that secret can compute or guess another scope's salt.
 *
 * @example await cacheSalt(env.BACKEND_SECRET, { tenantId: "tn_1", keyId: "key_1", sharePrefixCache: false })
 */
export async function cacheSalt(master: string, scope: CacheScope): Promise<string> {
  const label = scope.sharePrefixCache
    ? `cache-salt:tenant:${scope.tenantId}`
    : `cache-salt:key:${scope.tenantId}:${scope.keyId}`;
  return hmacTag(master, label);
}
