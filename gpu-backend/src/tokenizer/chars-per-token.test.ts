import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { maxCharsPerToken } from "./chars-per-token.ts";
import { ModelTokenizer } from "./tokenizer.ts";

const tinyModel = join(import.meta.dirname, "../../../.cache/fixtures/tiny-llama");

describe("maxCharsPerToken", () => {
  it("is the longest vocabulary entry for byte-level BPE", () => {
    expect(maxCharsPerToken({ model: { type: "BPE" } }, ["a", "hello", "Ġworld"])).toBe(6);
  });

  it("gives no bound where a token may cover more input than its entry", () => {
    const vocab = ["a", "bb"];
    expect(maxCharsPerToken({ model: { type: "BPE", fuse_unk: true } }, vocab)).toBeNull();
    expect(maxCharsPerToken({ model: { type: "Unigram" } }, vocab)).toBeNull();
    const nested = { type: "Sequence", normalizers: [{ type: "Lowercase" }, { type: "NFKC" }] };
    expect(maxCharsPerToken({ model: { type: "BPE" }, normalizer: nested }, vocab)).toBeNull();
  });
});

describe.skipIf(!existsSync(tinyModel))("surelyLongerThan", () => {
  it("never refuses a text that fits, and refuses long ones without encoding", () => {
    const tokenizer = ModelTokenizer.fromDirectory(tinyModel);
    for (const text of ["hello world ".repeat(50), "é漢🙂".repeat(40), " ".repeat(300)]) {
      const tokens = tokenizer.encode(text, true).length;
      expect(tokenizer.surelyLongerThan(text, tokens)).toBe(false);
    }
    expect(tokenizer.surelyLongerThan("x".repeat(1_000_000), 256)).toBe(true);
  });
});
