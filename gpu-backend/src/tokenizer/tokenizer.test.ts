import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ChatTemplate, ChatTemplateError } from "./chat-template.ts";
import { IncrementalDetokenizer } from "./incremental-detokenizer.ts";
import { byteLevelTokenizer, IM_END, IM_START } from "./testing/byte-level-tokenizer.ts";
import { ModelTokenizer, TokenizerLoadError } from "./tokenizer.ts";

const fixtures = join(import.meta.dirname, "../../../.cache/fixtures");
const TEXT = "Hello the world! 😀 naïve café — 日本語 👩‍👩‍👧 done.";

function streamed(tokenizer: ModelTokenizer, prompt: number[], ids: number[]): string[] {
  const detok = new IncrementalDetokenizer(tokenizer, prompt);
  const deltas = ids.map((id) => detok.push(id));
  deltas.push(detok.finish());
  return deltas;
}

describe("hand-made byte-level tokenizer", () => {
  const tokenizer = byteLevelTokenizer();

  it("round-trips text and applies merges", () => {
    const ids = tokenizer.encode(" the", false);
    expect(ids).toHaveLength(1);
    expect(tokenizer.decode(tokenizer.encode(TEXT, false))).toBe(TEXT);
  });

  it("knows its eos and renders ChatML", () => {
    expect(tokenizer.eosTokenIds).toEqual([tokenizer.encode(IM_END, false)[0]]);
    const prompt = tokenizer.chatTemplate?.render([{ role: "user", content: "Hi" }], true);
    expect(prompt).toBe(`${IM_START}user\nHi${IM_END}\n${IM_START}assistant\n`);
    expect(tokenizer.encode(prompt ?? "", false)[0]).toBe(tokenizer.encode(IM_START, false)[0]);
  });

  it("streams an emoji split over 4 byte tokens as one whole delta", () => {
    const ids = tokenizer.encode("a😀b", false);
    expect(ids).toHaveLength(6);
    expect(streamed(tokenizer, [], ids)).toEqual(["a", "", "", "", "😀", "b", ""]);
  });

  it("never emits U+FFFD while characters are split, and joins to the full decode", () => {
    const ids = tokenizer.encode(TEXT, false);
    const deltas = streamed(tokenizer, tokenizer.encode("prompt", false), ids);
    for (const delta of deltas) expect(delta).not.toContain("\uFFFD");
    expect(deltas.join("")).toBe(TEXT);
  });

  it("releases a truly invalid tail at the end as a full decode would", () => {
    const ids = tokenizer.encode("ok😀", false).slice(0, -2);
    const deltas = streamed(tokenizer, [], ids);
    expect(deltas.slice(0, -1).join("")).toBe("ok");
    expect(deltas.join("")).toBe(tokenizer.decode(ids));
  });

  it("skips special tokens in streamed output", () => {
    const ids = tokenizer.encode(`hi${IM_END}`, false);
    expect(streamed(tokenizer, [], ids).join("")).toBe("hi");
  });

  it("turns a template's raise_exception into a named error", () => {
    const template = new ChatTemplate("{{ raise_exception('roles must alternate') }}", {});
    expect(() => template.render([], true)).toThrow(ChatTemplateError);
    expect(() => template.render([], true)).toThrow(/roles must alternate/);
  });

  it("names a missing tokenizer.json", () => {
    expect(() => ModelTokenizer.fromDirectory("/nonexistent")).toThrow(TokenizerLoadError);
  });
});

for (const model of ["tiny-llama", "smollm2-135m-instruct"]) {
  const dir = join(fixtures, model);
  describe.skipIf(!existsSync(join(dir, "tokenizer.json")))(`fixture ${model}`, () => {
    it("loads, round-trips, streams and renders its chat template", () => {
      const tokenizer = ModelTokenizer.fromDirectory(dir);
      const ids = tokenizer.encode(TEXT, false);
      expect(tokenizer.decode(ids)).toBe(TEXT);
      const deltas = streamed(tokenizer, [], ids);
      for (const delta of deltas) expect(delta).not.toContain("\uFFFD");
      expect(deltas.join("")).toBe(TEXT);
      // both name <|im_end|> (id 2) their EOS
      expect(tokenizer.eosTokenIds).toEqual([2]);
      const prompt = tokenizer.chatTemplate?.render([{ role: "user", content: "Hi" }], true);
      expect(prompt).toContain("Hi");
      expect(prompt).toMatch(/assistant\n$/);
    });
  });
}
