const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/**
 * Random base62 text from the CSPRNG, without modulo bias (rejection sampling).
 *
 * @example randomToken(32) // "x8Fk…" (32 chars, ~190 bits)
 */
export function randomToken(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of crypto.getRandomValues(new Uint8Array(length * 2))) {
      // 248 = 4 * 62: bytes at or above it would favour the first letters.
      if (byte < 248 && out.length < length) out += alphabet[byte % 62];
    }
  }
  return out;
}

/** Ids of stored things: a type prefix and 16 random characters, e.g. `tn_3kf…`. */
export function newId(prefix: string): string {
  return `${prefix}${randomToken(16)}`;
}
