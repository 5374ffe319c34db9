import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CallDeltas, type ChatDelta } from "./call-deltas.ts";
import { renderCalls } from "./call-format.ts";
import { CALL_FORMATS } from "./formats/index.ts";

/** What OpenAI's SDKs do with streamed deltas: concatenate content and each call's pieces. */
function assemble(deltas: ChatDelta[]) {
  let content = "";
  const calls: { id: string; name: string; arguments: string }[] = [];
  for (const delta of deltas) {
    if (typeof delta.content === "string") content += delta.content;
    type Piece = { index: number; id?: string; function: { name?: string; arguments: string } };
    for (const piece of (delta.tool_calls as Piece[] | undefined) ?? []) {
      const { index, id, function: fn } = piece;
      if (id !== undefined) calls[index] = { id, name: fn.name ?? "", arguments: "" };
      (calls[index] as { arguments: string }).arguments += fn.arguments;
    }
  }
  return { content, calls };
}

const stream = (
  format: keyof typeof CALL_FORMATS,
  text: string,
  cuts: number[],
  legacy = false,
) => {
  const deltas = new CallDeltas(CALL_FORMATS[format], legacy);
  const out: ChatDelta[] = [];
  let at = 0;
  for (const cut of [
    ...cuts.filter((c) => c > 0 && c < text.length).sort((a, b) => a - b),
    text.length,
  ]) {
    out.push(...deltas.push(text.slice(at, cut), cut === text.length));
    at = cut;
  }
  return { out, deltas };
};

describe("CallDeltas", () => {
  it("sends each call's id and name first, then its arguments in pieces, as OpenAI does", () => {
    const text =
      'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
    const { out, deltas } = stream("hermes", text, [3, 14, 30, 44, 60, 70]);
    expect(out[0]).toEqual({ content: "Che" });
    const header = out.find((d) => d.tool_calls !== undefined) as {
      tool_calls: { index: number; id: string; type: string; function: object }[];
    };
    expect(header.tool_calls[0]).toMatchObject({
      index: 0,
      type: "function",
      function: { name: "get_weather", arguments: "" },
    });
    expect(header.tool_calls[0]?.id).toMatch(/^call_[a-zA-Z0-9]{24}$/);
    expect(assemble(out)).toEqual({
      content: "Checking.\n",
      calls: [
        { id: header.tool_calls[0]?.id, name: "get_weather", arguments: '{"city": "Paris"}' },
      ],
    });
    expect(deltas.sawCalls).toBe(true);
  });

  it("assembles to the whole answer's parse however the text is cut, in every format", () => {
    const written = [
      { name: "get_weather", arguments: '{"city": "Pa\\"ris", "days": [1, 2]}' },
      { name: "get_time", arguments: '{"zone": "CET"}' },
    ];
    for (const format of ["hermes", "smollm2", "llama3_json", "mistral"] as const) {
      const text = renderCalls(CALL_FORMATS[format], written);
      fc.assert(
        fc.property(fc.array(fc.nat(text.length), { maxLength: 12 }), (cuts) => {
          const { calls, content } = assemble(stream(format, text, cuts).out);
          expect(content).toBe("");
          expect(calls.map(({ name, arguments: a }) => ({ name, arguments: a }))).toEqual(written);
        }),
        { numRuns: 60 },
      );
    }
  });

  it("answers the legacy functions with function_call pieces, one call", () => {
    const text = '<tool_call>[\n{"name": "f", "arguments": {"a": 1}}\n]</tool_call>';
    const { out } = stream("smollm2", text, [20, 40], true);
    expect(out[0]).toEqual({ function_call: { name: "f", arguments: "" } });
    expect(out.map((d) => (d.function_call as { arguments: string }).arguments).join("")).toBe(
      '{"a": 1}',
    );
  });

  it("sends plain text as content, releasing a held-back tail at the end", () => {
    const { out, deltas } = stream("hermes", "no call here <tool", [5]);
    expect(out).toEqual([{ content: "no ca" }, { content: "ll here <tool" }]);
    expect(deltas.sawCalls).toBe(false);
  });
});
