import { backendIdPattern } from "../auth/backend-credential.ts";
import type { Env } from "../env.ts";
import { base64url, hmacKey, macFromBase64url } from "../hmac.ts";

/** Files of a stored adapter, as named in R2 under adapters/<id>/. */
export const adapterFiles = ["adapter_config.json", "adapter_model.safetensors"] as const;
export type AdapterFile = (typeof adapterFiles)[number];

/** How long a signed download URL works. */
export const signedUrlTtlSeconds = 300;

function signingKey(env: Env): Promise<CryptoKey> {
  if (!env.URL_SIGNING_KEY || env.URL_SIGNING_KEY.length < 16) {
    throw new Error("URL_SIGNING_KEY is not set (or shorter than 16 characters)");
  }
  return hmacKey(env.URL_SIGNING_KEY);
}

/**
 * What a URL's signature covers. Ids and the file come from path segments or are checked
 * against backendIdPattern, and the expiry is digits: no part holds a "/", so the join is unambiguous.
 */
export type SignedUrlParts = { adapterId: string; file: string; backendId: string; exp: number };

const message = (p: SignedUrlParts) =>
  new TextEncoder().encode(`${p.adapterId}/${p.file}/${p.backendId}/${p.exp}`);

/**
 * A URL that one backend (and only with its credential, see internal-routes.ts) can GET an
 * adapter file from for the next few minutes: HMAC-SHA256 over
 * "<adapter id>/<file>/<backend id>/<expiry unix s>".
 *
 * @example await signAdapterUrl(env, "https://gw.example", { adapterId: "ad_x", file: "adapter_model.safetensors", backendId: "gpu-0" }, Date.now())
 */
export async function signAdapterUrl(
  env: Env,
  origin: string,
  target: { adapterId: string; file: AdapterFile; backendId: string },
  now: number,
): Promise<string> {
  const exp = Math.floor(now / 1000) + signedUrlTtlSeconds;
  const sig = base64url(
    await crypto.subtle.sign("HMAC", await signingKey(env), message({ ...target, exp })),
  );
  const query = new URLSearchParams({ backend: target.backendId, exp: String(exp), sig });
  return `${origin}/internal/adapters/${target.adapterId}/${target.file}?${query}`;
}

/** Why a signed URL is refused, or null when it is good. The HMAC check is constant-time. */
export async function checkSignedUrl(
  env: Env,
  url: { adapterId: string; file: string; backendId: string | undefined },
  expText: string | undefined,
  sigText: string | undefined,
  now: number,
): Promise<"expired" | "bad_signature" | null> {
  const exp = Number(expText);
  const sig = macFromBase64url(sigText ?? "");
  if (
    !Number.isSafeInteger(exp) ||
    sig === null ||
    url.backendId === undefined ||
    !backendIdPattern.test(url.backendId)
  ) {
    return "bad_signature";
  }
  const valid = await crypto.subtle.verify(
    "HMAC",
    await signingKey(env),
    sig,
    message({ adapterId: url.adapterId, file: url.file, backendId: url.backendId, exp }),
  );
  if (!valid) return "bad_signature";
  // Checked after the signature, so an expiry can't be probed without a valid URL.
  if (exp * 1000 <= now || exp * 1000 > now + 2 * signedUrlTtlSeconds * 1000) return "expired";
  return null;
}
