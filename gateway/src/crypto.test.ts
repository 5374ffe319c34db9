import { describe, expect, it } from "vitest";
import { sha256Hex, toHex } from "./crypto.ts";

describe("toHex and sha256Hex", () => {
  it("write every byte as two lowercase digits, leading zeros kept", () => {
    expect(toHex(new Uint8Array([0, 1, 15, 16, 160, 255]).buffer)).toBe("00010f10a0ff");
    expect(toHex(new ArrayBuffer(0))).toBe("");
  });

  it("hash as SHA-256 does (FIPS 180-2's 'abc' vector)", async () => {
    expect(await sha256Hex("abc")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });
});
