import { hmacTag } from "../hmac.ts";

/**
 * What a backend id claims in a credential: its id and the credential's version. A claim
 * proves nothing by itself; compare the whole credential with backendCredential().
 */
export type BackendClaim = { id: string; version: number };

/** Backend ids: letters, digits, dots, dashes, underscores (the admin API checks the same). */
export const backendIdPattern = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The secret of one backend: `<id>.v<version>.<HMAC-SHA256(BACKEND_SECRET, "backend:<id>:v<version>")>`.
 * Derived, never stored: the gateway recomputes it to call that backend and to check the
 * backend when it downloads an adapter. Each backend holds only its own, so a leaked one
 * speaks for that backend alone; bumping the version (rotation) or removing the backend
 * makes the old one worthless at the gateway. The id and version are in clear so the
 * gateway knows which one to recompute.
 *
 * @example await backendCredential(env.BACKEND_SECRET, "gpu-0", 1) // "gpu-0.v1.Xq3…"
 */
export async function backendCredential(
  master: string,
  id: string,
  version: number,
): Promise<string> {
  if (!backendIdPattern.test(id)) throw new Error(`not a backend id: ${JSON.stringify(id)}`);
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new Error(`not a credential version: ${version}`);
  }
  return `${id}.v${version}.${await hmacTag(master, `backend:${id}:v${version}`)}`;
}

/** The id and version `text` claims, or null when it is not shaped like a backend credential. */
export function backendClaim(text: string): BackendClaim | null {
  // The MAC has no dots and the version only digits, so an id with dots still splits one way.
  const match = /^([A-Za-z0-9._-]{1,64})\.v([1-9][0-9]{0,14})\.[A-Za-z0-9_-]{43}$/.exec(text);
  if (!match?.[1] || !match[2]) return null;
  return { id: match[1], version: Number(match[2]) };
}
