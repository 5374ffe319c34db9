const encoder = new TextEncoder();

/** Lowercase hex SHA-256 of text or bytes. */
export async function sha256Hex(data: string | ArrayBuffer | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return toHex(await crypto.subtle.digest("SHA-256", bytes));
}

const hexOfByte = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

export function toHex(buffer: ArrayBuffer): string {
  // a table and one string: every request hashes its API key
  let hex = "";
  for (const b of new Uint8Array(buffer)) hex += hexOfByte[b];
  return hex;
}

/**
 * Compares two secrets in time that depends only on their lengths, so a caller
 * cannot learn a prefix of the expected value from response timing. Both sides
 * are hashed first, which makes the lengths equal too.
 */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  return crypto.subtle.timingSafeEqual(ha, hb);
}
