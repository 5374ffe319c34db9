import { sha256Hex } from "../crypto.ts";
import { randomToken } from "../ids.ts";

export const apiKeyPrefix = "lf_live_";
/** 40 base62 characters: about 238 bits of entropy. */
const secretLength = 40;
const keyPattern = /^lf_live_[0-9A-Za-z]{40}$/;

/**
 * A new API key: the secret is shown to the caller once; only its SHA-256 hash
 * and a short display prefix are stored.
 *
 * @example const { secret, hash } = await generateApiKey(); // secret = "lf_live_…"
 */
export async function generateApiKey(): Promise<{ secret: string; hash: string; display: string }> {
  const secret = `${apiKeyPrefix}${randomToken(secretLength)}`;
  return {
    secret,
    hash: await sha256Hex(secret),
    display: secret.slice(0, apiKeyPrefix.length + 4),
  };
}

/** True when text has the shape of one of our keys (checked before any lookup). */
export function looksLikeApiKey(text: string): boolean {
  return keyPattern.test(text);
}

export function hashApiKey(secret: string): Promise<string> {
  return sha256Hex(secret);
}
