// HMAC-SHA256 tags as URL-safe text: the signed adapter URLs and the backends' credentials.
import { LruCache } from "./lru.ts";

/** Unpadded base64url of bytes (RFC 4648 §5). */
export function base64url(bytes: ArrayBuffer): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

/**
 * The 32 bytes of an HMAC-SHA256 written as 43 base64url characters, or null. The last
 * character carries 2 unused bits; only the canonical spelling is accepted.
 */
export function macFromBase64url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) return null;
  const bytes = Uint8Array.from(atob(`${text.replaceAll("-", "+").replaceAll("_", "/")}=`), (ch) =>
    ch.charCodeAt(0),
  );
  return base64url(bytes.buffer) === text ? bytes : null;
}

const encoder = new TextEncoder();

/**
 * Imported keys by secret: importing costs more than signing, and every forwarded request
 * signs (its backend's credential). A handful of secrets exist (URL_SIGNING_KEY,
 * BACKEND_SECRET, and a previous one while rotating), so the map stays small.
 */
const imported = new Map<string, Promise<CryptoKey>>();
const maxImported = 8;

/** HMAC-SHA256 key of a secret string. */
export function hmacKey(secret: string): Promise<CryptoKey> {
  let key = imported.get(secret);
  if (key === undefined) {
    if (imported.size >= maxImported) imported.clear();
    key = crypto.subtle.importKey(
      "raw",
      encoder.encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    imported.set(secret, key);
    // a failed import is not kept
    key.catch(() => imported.delete(secret));
  }
  return key;
}

/**
 * Tags of labels that recur on every request (a backend's credential, a key's prefix-cache
 * salt), kept: each is a function of its secret and label alone, and signing one cost ~3 %
 * of the gateway's CPU per request. Bounded by count; an hour at most, like any cache here.
 */
const tags = new LruCache<string>(10_000, 3_600_000);

/** base64url(HMAC-SHA256(secret, label)), remembered for labels asked again. */
export async function hmacTag(secret: string, label: string): Promise<string> {
  const cacheKey = `${secret.length}:${secret}${label}`; // one split only
  const known = tags.get(cacheKey);
  if (known !== undefined) return known;
  const tag = base64url(
    await crypto.subtle.sign("HMAC", await hmacKey(secret), encoder.encode(label)),
  );
  tags.set(cacheKey, tag);
  return tag;
}
