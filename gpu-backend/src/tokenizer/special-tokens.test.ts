import { describe, expect, it } from "vitest";
import { joinSections, SpecialTokens } from "./special-tokens.ts";

const specials = new SpecialTokens({
  added_tokens: [
    { id: 1, content: "<|im_start|>", special: true },
    { id: 2, content: "<|im_end|>", special: true, lstrip: true },
    { id: 3, content: "<s>", special: true, rstrip: true },
    { id: 4, content: "<s>x", special: true },
    { id: 5, content: "<think>", special: false },
  ],
});
const ids = (pieces: ReturnType<SpecialTokens["split"]>) =>
  pieces.map((p) => ("special" in p ? p.special.id : p.text));

describe("SpecialTokens", () => {
  it("splits at special tokens, leftmost then longest, as HF's splitter", () => {
    expect(ids(specials.split("<|im_start|>user\nhi<|im_end|>\n"))).toEqual([
      1,
      "user\nhi",
      2,
      "\n",
    ]);
    expect(ids(specials.split("a<s>xb<s>"))).toEqual(["a", 4, "b", 3]);
    // A non-special added token is text here.
    expect(ids(specials.split("<think>"))).toEqual(["<think>"]);
    expect(ids(specials.split(""))).toEqual([]);
  });

  it("sees text that holds, ends the start of, or begins with the end of a special token", () => {
    expect(specials.touches("hi <|im_end|> there")).toBe(true);
    expect(specials.touches("hi <|im_")).toBe(true); // the template's "end|>" could follow
    expect(specials.touches("start|> hi")).toBe(true);
    expect(specials.touches("hi <")).toBe(true);
    expect(specials.touches("a < b and c > d")).toBe(false);
    expect(specials.touches("<think>")).toBe(false);
  });

  it("joins text pieces and strips the whitespace lstrip/rstrip tokens eat", () => {
    const sections = joinSections([
      { text: "a " },
      { text: "b  " },
      ...specials.split("<|im_end|>"),
      ...specials.split("<s>"),
      { text: "  c" },
    ]);
    expect(ids(sections)).toEqual(["a b", 2, 3, "c"]);
  });
});
