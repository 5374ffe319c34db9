import { describe, expect, it } from "vitest";
import { sha256BlockHasher } from "./block-hasher.ts";

describe("sha256BlockHasher", () => {
  it("is SHA-256 of the length-prefixed model, parent and u32 token ids", async () => {
    const { createHash } = await import("node:crypto");
    const lengths = Buffer.from([1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0]);
    const body = Buffer.concat([
      lengths,
      Buffer.from("m"),
      Buffer.from("pa"),
      Buffer.from([7, 0, 0, 0, 0, 1, 0, 0]),
    ]);
    expect(sha256BlockHasher("m")("pa", [7, 256])).toBe(
      createHash("sha256").update(body).digest("hex"),
    );
  });

  it("tells apart inputs that would encode alike without the lengths", () => {
    const hash = sha256BlockHasher("model");
    const seen = new Set([
      hash("ab", [1]),
      hash("a", [1]),
      hash("ab", [1, 0]),
      hash("ab", [256]),
      sha256BlockHasher("other")("ab", [1]),
      sha256BlockHasher("modela")("b", [1]),
    ]);
    expect(seen.size).toBe(6);
    expect(hash("ab", [1])).toBe(hash("ab", [1]));
  });
});
