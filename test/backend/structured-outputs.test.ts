// Constrained output always parses, even from a model with random weights: 240 random
// JSON Schemas answered at once on four adapters (and the base model) of the tiny fixture,
// each answer checked by ajv; vLLM's structured_outputs on both endpoints; tool calls
// whose arguments follow their tool's schema; the grammars compiled once and let go.

import fc from "fast-check";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "./backend-process.ts";
import { randomSchema, type Schema, schemaValidator } from "./random-json-schema.ts";

const MODELS = ["tiny-llama", "tiny-r4", "tiny-r8", "tiny-r16-rslora"];

describe.skipIf(!haveFixtures)("structured outputs end to end (tiny-llama on CPU)", () => {
  let backend: Backend;
  let client: OpenAI;

  beforeAll(async () => {
    backend = await startBackend(["--max-num-seqs", "64"]);
    client = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  afterAll(async () => {
    await backend?.stop();
  });

  const metric = async (name: string) => {
    const text = await (await fetch(`${backend.url}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(name));
    return Number(line?.split(" ").at(-1) ?? Number.NaN);
  };

  it("answers 200+ random JSON Schemas, in mixed-adapter batches, with JSON that validates", async () => {
    const samples = fc.sample(randomSchema(), { seed: 22, numRuns: 240 });
    const schemas = [...new Map(samples.map((s) => [JSON.stringify(s), s])).values()];
    expect(schemas.length).toBeGreaterThanOrEqual(200);
    const ajv = schemaValidator();
    const answers = await Promise.all(
      schemas.map((schema, i) =>
        client.chat.completions.create({
          model: MODELS[i % MODELS.length] as string,
          messages: [{ role: "user", content: `Answer ${i} as JSON.` }],
          max_tokens: 400,
          temperature: 1,
          seed: i,
          response_format: { type: "json_schema", json_schema: { name: `s${i}`, schema } },
        }),
      ),
    );
    let stopped = 0;
    for (const [i, answer] of answers.entries()) {
      const choice = answer.choices[0];
      if (choice?.finish_reason !== "stop") continue; // cut by max_tokens: counted below
      stopped++;
      const value: unknown = JSON.parse(choice.message.content ?? "");
      const valid = ajv.validate(schemas[i] as Schema, value);
      expect({ i, valid, errors: ajv.errorsText() }).toEqual({
        i,
        valid: true,
        errors: "No errors",
      });
    }
    expect(stopped).toBeGreaterThanOrEqual(Math.ceil(0.95 * schemas.length));
    // Each distinct schema was compiled once; the same schema again was a cache hit.
    expect(await metric('lorafleet_grammar_requests_total{result="miss"}')).toBeLessThanOrEqual(
      schemas.length,
    );
  });

  it("takes vLLM's structured_outputs on chat and completions: regex, choice, grammar, json", async () => {
    const completion = (structured_outputs: object) =>
      client.completions.create({
        model: "tiny-r8",
        prompt: "Say something:",
        max_tokens: 40,
        temperature: 1,
        seed: 3,
        structured_outputs,
      } as OpenAI.CompletionCreateParamsNonStreaming);
    const [regex, choice, grammar, json] = await Promise.all([
      completion({ regex: "[0-9]{3}-[a-z]{2}" }),
      completion({ choice: ["yes", "no", "maybe so"] }),
      completion({ grammar: 'root ::= "SELECT " ("a" | "b") " FROM t" [0-9]' }),
      completion({
        json: { type: "object", properties: { n: { type: "integer" } }, required: ["n"] },
      }),
    ]);
    expect(regex.choices[0]?.text).toMatch(/^[0-9]{3}-[a-z]{2}$/);
    expect(["yes", "no", "maybe so"]).toContain(choice.choices[0]?.text);
    expect(grammar.choices[0]?.text).toMatch(/^SELECT (a|b) FROM t[0-9]$/);
    expect(Number.isInteger(JSON.parse(json.choices[0]?.text ?? "").n)).toBe(true);
    const chat = await client.chat.completions.create({
      model: "tiny-llama",
      messages: [{ role: "user", content: "Pick" }],
      max_tokens: 8,
      structured_outputs: { choice: ["left", "right"] },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(["left", "right"]).toContain(chat.choices[0]?.message.content);
  });

  it("refuses a tool whose parameters llguidance cannot enforce, naming the tool and the path", async () => {
    const refused = await client.chat.completions
      .create({
        model: "tiny-llama",
        messages: [{ role: "user", content: "hi" }],
        tools: [
          { type: "function", function: { name: "f" } },
          {
            type: "function",
            function: { name: "g", parameters: { type: "object", properties: { x: { not: {} } } } },
          },
        ],
        tool_choice: "required",
        max_tokens: 8,
      })
      .catch((e) => e);
    expect([refused.status, refused.code, refused.param, refused.error.message]).toEqual([
      400,
      "grammar_invalid",
      "tools[1].function.parameters",
      'tools[1].function.parameters: at /properties/x: Unimplemented keys: ["not"] (llguidance cannot enforce them)',
    ]);
  });

  it("calls tools with arguments that follow each tool's schema, n choices each their own", async () => {
    const tools: OpenAI.ChatCompletionTool[] = fc
      .sample(randomSchema(1), { seed: 5, numRuns: 2 })
      .map((schema, i) => ({
        type: "function",
        function: {
          name: `tool_${i}`,
          parameters: {
            type: "object",
            properties: { x: schema },
            required: ["x"],
            additionalProperties: false,
          },
        },
      }));
    const ajv = schemaValidator();
    const answer = await client.chat.completions.create({
      model: "tiny-r4",
      messages: [{ role: "user", content: "Use the tools." }],
      tools,
      tool_choice: "required",
      max_tokens: 150,
      temperature: 1,
      seed: 9,
      n: 3,
    });
    expect(answer.choices).toHaveLength(3);
    expect(answer.choices.filter((c) => c.finish_reason === "tool_calls").length).toBeGreaterThan(
      0,
    );
    for (const choice of answer.choices) {
      if (choice.finish_reason === "length") continue;
      expect(choice.finish_reason).toBe("tool_calls");
      expect(choice.message.content).toBeNull();
      for (const call of choice.message.tool_calls ?? []) {
        if (call.type !== "function") throw new Error(call.type);
        const tool = tools.find(
          (t) => t.type === "function" && t.function.name === call.function.name,
        );
        if (tool?.type !== "function") throw new Error(`unknown tool ${call.function.name}`);
        expect(
          ajv.validate(tool.function.parameters as Schema, JSON.parse(call.function.arguments)),
        ).toBe(true);
        expect(call.id).toMatch(/^call_[a-zA-Z0-9]{24}$/);
      }
    }
  });
});
