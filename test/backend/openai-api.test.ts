// The backend as a user sees it: the official openai client against the real server,
// real Python executor on CPU, tiny fixture model and adapters.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "./backend-process.ts";

describe.skipIf(!haveFixtures)("OpenAI API end to end (tiny-llama on CPU)", () => {
  let backend: Backend;
  let client: OpenAI;

  beforeAll(async () => {
    backend = await startBackend(["--max-model-len", "256"]);
    client = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  afterAll(async () => {
    await backend?.stop();
  });

  it("chats with the base model", async () => {
    const answer = await client.chat.completions.create({
      model: "tiny-llama",
      messages: [{ role: "user", content: "Hello there" }],
      max_tokens: 8,
      temperature: 0,
    });
    expect(answer.object).toBe("chat.completion");
    expect(answer.choices).toHaveLength(1);
    expect(typeof answer.choices[0]?.message.content).toBe("string");
    expect(["stop", "length"]).toContain(answer.choices[0]?.finish_reason);
    expect(answer.usage?.prompt_tokens).toBeGreaterThan(0);
    expect(answer.usage?.completion_tokens).toBeGreaterThan(0);
    expect(answer.usage?.completion_tokens).toBeLessThanOrEqual(8);
  });

  it("bills message text that spells a control token as the text it is", async () => {
    const promptTokens = async (content: string) =>
      (
        await client.chat.completions.create({
          model: "tiny-llama",
          messages: [{ role: "user", content }],
          max_tokens: 1,
        })
      ).usage?.prompt_tokens ?? 0;
    // "<|im_start|>" used to cost what "hi" costs: one control token, a forged turn start.
    const hi = await promptTokens("hi");
    expect(await promptTokens("<|im_start|>")).toBeGreaterThan(hi + 4);
  });

  it("completes text, n choices and logprobs", async () => {
    const answer = await client.completions.create({
      model: "tiny-llama",
      prompt: ["one two three", "four"],
      max_tokens: 5,
      temperature: 0,
      n: 2,
      logprobs: 2,
      ignore_eos: true,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(answer.choices.map((c) => c.index).sort()).toEqual([0, 1, 2, 3]);
    for (const choice of answer.choices) {
      expect(choice.finish_reason).toBe("length");
      expect(choice.logprobs?.tokens).toHaveLength(5);
      expect(choice.logprobs?.token_logprobs?.every((lp) => lp <= 0)).toBe(true);
    }
    // greedy: both choices of one prompt agree
    expect(answer.choices.find((c) => c.index === 0)?.text).toBe(
      answer.choices.find((c) => c.index === 1)?.text,
    );
    expect(answer.usage?.completion_tokens).toBe(20);
  });

  it("streams the same text as the whole answer, with usage last (or in every chunk, when asked)", async () => {
    const params = {
      model: "tiny-llama",
      messages: [{ role: "user" as const, content: "Stream me something" }],
      max_tokens: 12,
      temperature: 0,
    };
    const whole = await client.chat.completions.create(params);
    const stream = await client.chat.completions.create({
      ...params,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0]?.message.content);
    expect(finish).toBe(whole.choices[0]?.finish_reason);
    // The streamed request found the whole one's prompt cached: every full block of 16
    // tokens of it (at most all but its last token).
    const promptTokens = whole.usage?.prompt_tokens ?? 0;
    const cached = Math.min(16 * Math.floor(promptTokens / 16), promptTokens - 1);
    expect(whole.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
    expect(cached).toBeGreaterThan(0);
    expect(usage).toEqual({ ...whole.usage, prompt_tokens_details: { cached_tokens: cached } });

    // vLLM's continuous_usage_stats: the usage so far in every chunk, ending at the whole count
    const counting = await client.chat.completions.create({
      ...params,
      stream: true,
      stream_options: { include_usage: true, continuous_usage_stats: true },
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    const counts: number[] = [];
    for await (const chunk of counting) {
      expect(chunk.usage?.prompt_tokens).toBe(whole.usage?.prompt_tokens);
      counts.push(chunk.usage?.completion_tokens ?? -1);
    }
    // the opening chunk has none yet; each later one counts its tokens
    expect(counts[0]).toBe(0);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(counts.at(-1)).toBe(whole.usage?.completion_tokens);
  });

  it("serves an adapter by name, loaded on first use, and lists it", async () => {
    const answer = await client.chat.completions.create({
      model: "tiny-r8",
      messages: [{ role: "user", content: "Hello there" }],
      max_tokens: 6,
      temperature: 0,
    });
    expect(answer.model).toBe("tiny-r8");
    expect(answer.usage?.completion_tokens).toBeGreaterThan(0);
    const models = await client.models.list();
    const ids = models.data.map((m) => m.id);
    expect(ids).toContain("tiny-llama");
    expect(ids).toContain("tiny-r8");
  });

  it("reproduces seeded sampling, varies seeded choices, and reports top logprobs", async () => {
    const params = {
      model: "tiny-llama",
      messages: [{ role: "user" as const, content: "Sample me" }],
      max_tokens: 8,
      temperature: 1,
      seed: 7,
      n: 3,
      logprobs: true,
      top_logprobs: 2,
    };
    const first = await client.chat.completions.create(params);
    const second = await client.chat.completions.create(params);
    const texts = (answer: OpenAI.ChatCompletion) =>
      [...answer.choices].sort((a, b) => a.index - b.index).map((c) => c.message.content);
    expect(texts(second)).toEqual(texts(first));
    expect(new Set(texts(first)).size).toBeGreaterThan(1);
    for (const choice of first.choices) {
      const content = choice.logprobs?.content ?? [];
      expect(content.length).toBeGreaterThan(0);
      for (const entry of content) {
        expect(entry.top_logprobs).toHaveLength(2);
        expect(entry.logprob).toBeLessThanOrEqual(0);
      }
    }
  });

  it("answers an unknown model with 404 model_not_found", async () => {
    const error = await client.chat.completions
      .create({ model: "no-such-adapter", messages: [{ role: "user", content: "hi" }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    expect((error as InstanceType<typeof OpenAI.NotFoundError>).code).toBe("model_not_found");
  });

  it("answers a prompt longer than the context with 400 context_length_exceeded", async () => {
    const error = await client.completions
      .create({ model: "tiny-llama", prompt: "word ".repeat(400), max_tokens: 4 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).code).toBe(
      "context_length_exceeded",
    );
  });

  it("answers invalid parameters with 400 naming the parameter", async () => {
    const error = await client.chat.completions
      .create({ model: "tiny-llama", messages: [{ role: "user", content: "hi" }], temperature: 7 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("temperature");
    const empty = await client.chat.completions
      .create({ model: "tiny-llama", messages: [] })
      .catch((e: unknown) => e);
    expect(empty).toBeInstanceOf(OpenAI.BadRequestError);
  });

  it("cuts at a stop string and never shows it", async () => {
    const free = await client.completions.create({
      model: "tiny-llama",
      prompt: "a b c",
      max_tokens: 12,
      temperature: 0,
      ignore_eos: true,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    const text = free.choices[0]?.text ?? "";
    const stop = text.slice(3, 5);
    expect(stop.length).toBe(2);
    const stopped = await client.completions.create({
      model: "tiny-llama",
      prompt: "a b c",
      max_tokens: 12,
      temperature: 0,
      ignore_eos: true,
      stop: [stop],
    } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(stopped.choices[0]?.finish_reason).toBe("stop");
    expect(stopped.choices[0]?.text).toBe(text.slice(0, text.indexOf(stop)));
  });

  it("registers and unregisters adapters as vLLM does", async () => {
    const post = (path: string, body: unknown) =>
      fetch(`${backend.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    expect((await post("/v1/load_lora_adapter", { lora_name: "tiny-r4" })).status).toBe(200);
    expect((await post("/v1/unload_lora_adapter", { lora_name: "tiny-r4" })).status).toBe(200);
    expect((await post("/v1/unload_lora_adapter", { lora_name: "tiny-r4" })).status).toBe(404);
    const bad = await post("/v1/load_lora_adapter", { lora_name: "x", lora_path: "/nonexistent" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("adapter_invalid");
  });

  it("exports Prometheus metrics", async () => {
    const text = await (await fetch(`${backend.url}/metrics`)).text();
    expect(text).toContain("lorafleet_time_to_first_token_seconds_count");
    expect(text).toMatch(/lorafleet_step_seconds_count [1-9]/);
    expect(text).toMatch(/lorafleet_step_executor_seconds_count [1-9]/);
    // the adapter served on first use above: staged from disk, then loaded into the pool
    expect(text).toMatch(/lorafleet_adapter_op_seconds_count\{op="stage"\} [1-9]/);
    expect(text).toMatch(/lorafleet_adapter_op_seconds_count\{op="load"\} [1-9]/);
    expect(text).toMatch(/lorafleet_generated_tokens_total \d+/);
    expect(text).toContain('lorafleet_pool_pages{use="free"}');
  });
});
