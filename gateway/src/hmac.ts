// HMAC-SHA256 tags as URL-safe text: the signed adapter URLs and the backends' credentials.

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

/** HMAC-SHA256 key of a secret string. */
export function hmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}
