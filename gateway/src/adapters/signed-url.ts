import type { Env } from "../env.ts";

/** Files of a stored adapter, as named in R2 under adapters/<id>/. */
export const adapterFiles = ["adapter_config.json", "adapter_model.safetensors"] as const;
export type AdapterFile = (typeof adapterFiles)[number];

/** How long a signed download URL works. */
export const signedUrlTtlSeconds = 300;

const encoder = new TextEncoder();

function signingKey(env: Env): Promise<CryptoKey> {
  if (!env.URL_SIGNING_KEY || env.URL_SIGNING_KEY.length < 16) {
    throw new Error("URL_SIGNING_KEY is not set (or shorter than 16 characters)");
  }
  return crypto.subtle.importKey(
    "raw",
    encoder.encode(env.URL_SIGNING_KEY),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

const message = (adapterId: string, file: string, exp: number) =>
  encoder.encode(`${adapterId}/${file}/${exp}`);

function base64url(bytes: ArrayBuffer): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) return null;
  const bytes = Uint8Array.from(atob(`${text.replaceAll("-", "+").replaceAll("_", "/")}=`), (ch) =>
    ch.charCodeAt(0),
  );
  // The last character carries 2 unused bits; only the canonical spelling is accepted.
  return base64url(bytes.buffer) === text ? bytes : null;
}

/**
 * A URL a backend can GET an adapter file from for the next few minutes:
 * HMAC-SHA256 over "<adapter id>/<file>/<expiry unix s>".
 *
 * @example await signAdapterUrl(env, "https://gw.example", "ad_x", "adapter_model.safetensors", Date.now())
 */
export async function signAdapterUrl(
  env: Env,
  origin: string,
  adapterId: string,
  file: AdapterFile,
  now: number,
): Promise<string> {
  const exp = Math.floor(now / 1000) + signedUrlTtlSeconds;
  const sig = base64url(
    await crypto.subtle.sign("HMAC", await signingKey(env), message(adapterId, file, exp)),
  );
  return `${origin}/internal/adapters/${adapterId}/${file}?exp=${exp}&sig=${sig}`;
}

/** Why a signed URL is refused, or null when it is good. The HMAC check is constant-time. */
export async function checkSignedUrl(
  env: Env,
  adapterId: string,
  file: string,
  expText: string | undefined,
  sigText: string | undefined,
  now: number,
): Promise<"expired" | "bad_signature" | null> {
  const exp = Number(expText);
  const sig = fromBase64url(sigText ?? "");
  if (!Number.isSafeInteger(exp) || sig === null) return "bad_signature";
  const valid = await crypto.subtle.verify(
    "HMAC",
    await signingKey(env),
    sig,
    message(adapterId, file, exp),
  );
  if (!valid) return "bad_signature";
  // Checked after the signature, so an expiry can't be probed without a valid URL.
  if (exp * 1000 <= now || exp * 1000 > now + 2 * signedUrlTtlSeconds * 1000) return "expired";
  return null;
}
