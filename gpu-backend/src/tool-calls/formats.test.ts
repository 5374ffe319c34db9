// Each family's parser on answers as its models write them (their model cards, vLLM's
// parser tests), malformed and cut ones included: what parses becomes calls, what does
// not stays text, nothing is lost.
import { describe, expect, it } from "vitest";
import { type CallFormat, renderCalls } from "./call-format.ts";
import { CALL_FORMATS } from "./formats/index.ts";

const { hermes, smollm2, llama3_json: llama3, mistral } = CALL_FORMATS;

const calls = (format: CallFormat, text: string) =>
  format.parse(text, true).calls.map((call) => [call.name, JSON.parse(call.arguments)]);

describe("hermes / qwen", () => {
  it("reads Qwen 2.5's parallel calls after text", () => {
    const text =
      "Let me check both.\n<tool_call>\n" +
      '{"name": "get_current_temperature", "arguments": {"location": "San Francisco, CA, USA"}}\n' +
      "</tool_call>\n<tool_call>\n" +
      '{"name": "get_temperature_date", "arguments": {"location": "San Francisco, CA, USA", "date": "2024-10-01"}}\n' +
      "</tool_call>";
    expect(hermes.parse(text, true).content).toBe("Let me check both.\n");
    expect(calls(hermes, text)).toEqual([
      ["get_current_temperature", { location: "San Francisco, CA, USA" }],
      ["get_temperature_date", { location: "San Francisco, CA, USA", date: "2024-10-01" }],
    ]);
  });

  it("takes keys in any order, arguments as a JSON string, and a missing close tag at the end", () => {
    const text = '<tool_call>\n{"arguments": "{\\"a\\": 1}", "name": "f"}';
    expect(hermes.parse(text, true)).toEqual({
      content: "",
      calls: [{ name: "f", arguments: '{"a": 1}', complete: true }],
    });
  });

  it("leaves what is not JSON as text: Hermes 2's Python dicts, a call cut by max_tokens", () => {
    const dict = "<tool_call>\n{'name': 'f', 'arguments': {'a': 1}}\n</tool_call>";
    expect(hermes.parse(dict, true)).toEqual({ content: dict, calls: [] });
    const cut = 'Sure <tool_call>\n{"name": "f", "arguments": {"a": ';
    expect(hermes.parse(cut, true)).toEqual({ content: cut, calls: [] });
    const notCall = '<tool_call>\n{"tool": "f"}\n</tool_call>';
    expect(hermes.parse(notCall, true).calls).toEqual([]);
  });

  it("while streaming, holds back text that may open a call, and knows the part of a call so far", () => {
    expect(hermes.parse("Hello <tool_", false)).toEqual({ content: "Hello ", calls: [] });
    expect(hermes.parse("Hello <tool_", true)).toEqual({ content: "Hello <tool_", calls: [] });
    expect(hermes.parse('<tool_call>\n{"name": "get_wea', false).calls).toEqual([
      { name: null, arguments: "", complete: false },
    ]);
    expect(
      hermes.parse('<tool_call>\n{"name": "f", "arguments": {"city": "Par', false).calls,
    ).toEqual([{ name: "f", arguments: '{"city": "Par', complete: false }]);
  });
});

describe("smollm2", () => {
  it("reads its list of calls in one tag (its model card's format)", () => {
    const text =
      '<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Paris"}},\n' +
      '{"name": "get_time", "arguments": {"zone": "CET"}}\n]</tool_call>';
    expect(calls(smollm2, text)).toEqual([
      ["get_weather", { city: "Paris" }],
      ["get_time", { zone: "CET" }],
    ]);
    expect(smollm2.parse("<tool_call>[]</tool_call>", true)).toEqual({ content: "", calls: [] });
  });
});

describe("llama3_json", () => {
  it("reads Llama 3.1's answer-is-the-call, with <|python_tag|> and several calls", () => {
    expect(calls(llama3, '{"name": "get_weather", "parameters": {"location": "Paris"}}')).toEqual([
      ["get_weather", { location: "Paris" }],
    ]);
    const two =
      '<|python_tag|>{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 1}}';
    expect(calls(llama3, two)).toEqual([
      ["a", {}],
      ["b", { x: 1 }],
    ]);
  });

  it("treats an answer that does not start as a call as text", () => {
    const text = 'The weather call would be {"name": "get_weather"}';
    expect(llama3.parse(text, true)).toEqual({ content: text, calls: [] });
    expect(llama3.parse('{"name": "f", "parameters": {}} and more', true).calls).toEqual([]);
    expect(llama3.parse("  {", false)).toEqual({
      content: "",
      calls: [{ name: null, arguments: "", complete: false }],
    });
  });
});

describe("mistral", () => {
  it("reads [TOOL_CALLS] and its JSON list, with or without a space", () => {
    const text =
      '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"location": "Paris, France", "format": "celsius"}}]';
    expect(calls(mistral, text)).toEqual([
      ["get_current_weather", { location: "Paris, France", format: "celsius" }],
    ]);
    expect(calls(mistral, '[TOOL_CALLS][{"name": "f", "arguments": {}}]')).toEqual([["f", {}]]);
    expect(mistral.callId()).toMatch(/^[a-zA-Z0-9]{9}$/);
  });
});

describe("renderCalls", () => {
  it("writes calls as each family's parser reads them back", () => {
    const written = [
      { name: "get_weather", arguments: '{"city": "Paris"}' },
      { name: "get_time", arguments: "{}" },
    ];
    for (const format of [hermes, smollm2, llama3, mistral]) {
      const text = renderCalls(format, written);
      expect(
        format.parse(text, true).calls.map(({ name, arguments: a }) => ({ name, arguments: a })),
      ).toEqual(written);
    }
    expect(renderCalls(hermes, written.slice(0, 1))).toBe(
      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    );
  });
});
