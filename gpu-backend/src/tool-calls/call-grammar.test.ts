// The call grammars compiled by the executor's own code (llguidance, the tiny fixture's
// tokenizer) and run against texts: what each family's parser reads as calls of the
// offered tools is accepted, anything else is not.
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { HAVE_TINY, TEST_PYTHON, TINY_MODEL } from "../executor/test-fixtures.ts";
import { renderCalls } from "./call-format.ts";
import { callGrammar } from "./call-grammar.ts";
import { CALL_FORMATS } from "./formats/index.ts";
import type { ToolRequest } from "./tools.ts";

const weather = {
  name: "get_weather",
  description: "the weather",
  parameters: {
    type: "object",
    properties: { city: { type: "string", maxLength: 12 }, unit: { enum: ["c", "f"] } },
    required: ["city", "unit"],
    additionalProperties: false,
  },
};
const time = { name: "get_time", description: null, parameters: null };
const request = (choice: ToolRequest["choice"], parallel = true): ToolRequest => ({
  tools: [weather, time],
  choice,
  parallel,
  legacy: false,
});
const paris = { name: "get_weather", arguments: '{"city": "Paris", "unit": "c"}' };
const now = { name: "get_time", arguments: "{}" };

// Compiles each grammar with lorafleet_executor.grammar and reports, per text, whether
// the grammar takes it whole (every token, then accepting).
const SCRIPT = `
import json, sys
from lorafleet_executor.grammar.cache import GrammarCache
from lorafleet_executor.grammar.tokenizer import grammar_tokenizer
tokenizer = grammar_tokenizer(sys.argv[1], 512, [2])
cache = GrammarCache(lambda: tokenizer)
out = []
for case in json.load(sys.stdin):
    compiled = cache.get(case["kind"], case["source"])[0].result()
    results = []
    for text in case["texts"]:
        m = compiled.matcher.deep_copy()
        results.append(m.consume_tokens(tokenizer.tokenize_str(text)) and m.is_accepting())
    out.append(results)
print(json.dumps(out))
`;

function accepted(cases: { source: string; texts: string[] }[]): boolean[][] {
  const input = JSON.stringify(cases.map((c) => ({ kind: "lark", ...c })));
  const stdout = execFileSync(TEST_PYTHON, ["-c", SCRIPT, TINY_MODEL], { input, encoding: "utf8" });
  return JSON.parse(stdout) as boolean[][];
}

describe("callGrammar", () => {
  it("is none for tool_choice none, and names each tool's line", () => {
    const { hermes } = CALL_FORMATS;
    expect(callGrammar(hermes, request("none"), () => null, null)).toBeNull();
    const grammar = callGrammar(hermes, request("required"), () => null, null);
    const lines = grammar?.spec.source.split("\n") ?? [];
    expect([...(grammar?.toolAtLine ?? [])]).toEqual([
      [lines.findIndex((l) => l.startsWith("call_0:")) + 1, 0],
      [lines.findIndex((l) => l.startsWith("call_1:")) + 1, 1],
    ]);
    expect(lines.find((l) => l.startsWith("call_1:"))).toContain('"additionalProperties":false');
  });

  it("asks for a special-token trigger by its id", () => {
    const grammar = callGrammar(CALL_FORMATS.mistral, request("required"), () => 5, null);
    expect(grammar?.spec.source).toContain('start: <[5]> "[" calls "]"');
  });

  it.skipIf(!HAVE_TINY)("takes exactly the calls the choice allows, in every format", () => {
    const formats = ["hermes", "smollm2", "llama3_json", "mistral"] as const;
    const cases = formats.flatMap((name) => {
      const format = CALL_FORMATS[name];
      const call = (...calls: (typeof paris)[]) => renderCalls(format, calls);
      const badArgs = call({ name: "get_weather", arguments: '{"city": "Paris", "unit": "k"}' });
      const unknown = call({ name: "get_moon", arguments: "{}" });
      const source = (choice: ToolRequest["choice"], parallel = true) =>
        callGrammar(format, request(choice, parallel), () => null, null)?.spec.source as string;
      return [
        // required: calls only, one or more, each valid
        {
          source: source("required"),
          texts: [call(paris), call(paris, now), "hello", badArgs, unknown],
        },
        // one named function: only it
        { source: source({ name: "get_time" }), texts: [call(now), call(paris)] },
        // no parallel calls: one
        { source: source("required", false), texts: [call(paris), call(paris, now)] },
        // auto: free text, or a call (text before it but for Llama's answer-is-the-call)
        {
          source: source("auto"),
          texts: [
            "just text",
            `${name === "llama3_json" ? "\n" : "Sure. "}${call(now)}`,
            name === "llama3_json" ? badArgs : `Sure. ${badArgs}`,
          ],
        },
      ];
    });
    const results = accepted(cases);
    for (let f = 0; f < formats.length; f++) {
      const [required, named, single, auto] = results.slice(4 * f, 4 * f + 4);
      expect({ format: formats[f], required, named, single, auto }).toEqual({
        format: formats[f],
        required: [true, true, false, false, false],
        named: [true, false],
        single: [true, false],
        auto: [true, true, false],
      });
    }
  });

  it.skipIf(!HAVE_TINY)("with a JSON answer format under auto: that JSON, or calls", () => {
    const content = { type: "object", properties: { a: { type: "integer" } }, required: ["a"] };
    const source = callGrammar(CALL_FORMATS.hermes, request("auto"), () => null, content)?.spec
      .source as string;
    expect(
      accepted([{ source, texts: ['{"a": 1}', renderCalls(CALL_FORMATS.hermes, [now]), "text"] }]),
    ).toEqual([[true, true, false]]);
  });
});
