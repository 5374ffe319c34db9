import { describe, expect, it } from "vitest";
import { base64url, hmacTag, macFromBase64url } from "./hmac.ts";

async function macNow(secret: string, label: string): Promise<string> {
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return base64url(await crypto.subtle.sign("HMAC", key, encoder.encode(label)));
}

describe("hmacTag", () => {
  it("is the HMAC-SHA256 of the label under the secret, the first time and when remembered", async () => {
    for (const label of ["backend:gpu-0:v1", "cache-salt:key:tn_1:key_1", ""]) {
      const expected = await macNow("secret-a", label);
      expect(await hmacTag("secret-a", label)).toBe(expected);
      expect(await hmacTag("secret-a", label)).toBe(expected);
      expect(macFromBase64url(expected)).not.toBeNull();
    }
  });

  it("never answers one secret's tag for another's, nor one label's for another's", async () => {
    const a = await hmacTag("secret-a", "backend:gpu-0:v1");
    expect(await hmacTag("secret-b", "backend:gpu-0:v1")).toBe(
      await macNow("secret-b", "backend:gpu-0:v1"),
    );
    expect(await hmacTag("secret-b", "backend:gpu-0:v1")).not.toBe(a);
    // the same text split elsewhere between secret and label is another entry
    expect(await hmacTag("secret-abackend", ":gpu-0:v1")).toBe(
      await macNow("secret-abackend", ":gpu-0:v1"),
    );
  });
});
