// The whole system as a tenant sees it: the official openai client with a tenant key
// against the gateway Worker (`wrangler dev`, local D1/KV/R2/DO, real migrations) in
// front of two real backends (tiny-llama + Python executor on CPU). Adapters reach the
// backends only through the gateway: uploaded by the tenant, downloaded by the backend
// through signed URLs. Every greedy answer must equal the backend's own answer to the
// same request, asked directly with the fixture adapter of the same weights.
import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI, {
  APIError,
  AuthenticationError,
  NotFoundError,
  RateLimitError,
  toFile,
} from "openai";
import { zodFunction, zodResponseFormat } from "openai/helpers/zod";
import type {
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionMessageParam,
} from "openai/resources/chat/completions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  type Backend,
  fixturesDir,
  haveFixtures,
  startBackend,
} from "../backend/backend-process.ts";
import { GatewayAdmin, type Tenant, uploadAdapter } from "./gateway-admin.ts";
import {
  backendSecretFor,
  freePort,
  type Gateway,
  gatewayOrigin,
  startGateway,
} from "./gateway-process.ts";

const baseModel = "tiny-llama";
const fixtureAdapter = (name: string) => join(fixturesDir, "adapters", name);

/** A greedy chat request of a fixed length (`ignore_eos` is the backend's vLLM extra). */
function chat(model: string, content: string, maxTokens = 8) {
  return {
    model,
    messages: [{ role: "user", content }],
    max_tokens: maxTokens,
    temperature: 0,
    ignore_eos: true,
  } as ChatCompletionCreateParamsNonStreaming;
}

function textOf(answer: OpenAI.ChatCompletion): string {
  return answer.choices[0]?.message.content ?? "";
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

type RequestLine = { tenantId: string; backendId: string | null; status: number };

/** The gateway's structured log line of each request of a tenant: it names the backend that answered. */
function requestLines(gateway: Gateway, tenantId: string): RequestLine[] {
  return gateway
    .logs()
    .split("\n")
    .filter((line) => line.startsWith("{") && line.includes('"event":"request"'))
    .map((line) => JSON.parse(line) as RequestLine)
    .filter((line) => line.tenantId === tenantId);
}

/** A backend's own time for a request (its `request` log line, by request id), in ms. */
function requestMs(backend: Backend, requestId: string): number | undefined {
  const line = backend
    .logs()
    .split("\n")
    .find((l) => l.includes(`"requestId":"${requestId}"`) && l.includes('"msg":"request"'));
  return line === undefined ? undefined : (JSON.parse(line) as { ms: number }).ms;
}

describe.skipIf(!haveFixtures)("gateway + backends + executor end to end", () => {
  /** the gateway's BACKEND_SECRET; each backend gets its own secret derived from it */
  const masterSecret = randomBytes(16).toString("hex");
  const backendIds = ["cpu-0", "cpu-1"];
  const backendSecrets: string[] = [];
  let gateway: Gateway;
  const backends: Backend[] = [];
  let admin: GatewayAdmin;
  /** the first backend, asked directly with the fixture adapters: the reference answers */
  let direct: OpenAI;
  let acme: Tenant;
  let globex: Tenant;
  const tenantClient = (key: string) =>
    new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
  /** The time the backend that served `requestId` spent on it. */
  const backendRequestMs = (requestId: string) => {
    const times = backends.map((b) => requestMs(b, requestId)).filter((ms) => ms !== undefined);
    expect(times).toHaveLength(1);
    return times[0] as number;
  };
  const directText = async (model: string, content: string, maxTokens = 8) =>
    textOf(await direct.chat.completions.create(chat(model, content, maxTokens)));

  beforeAll(async () => {
    const port = await freePort();
    backendSecrets.push(
      ...(await Promise.all(backendIds.map((id) => backendSecretFor(masterSecret, id)))),
    );
    const backendArgs = (secret: string) => [
      "--backend-secret",
      secret,
      "--adapter-url-allow",
      gatewayOrigin(port),
      // Mistral's prompt block is the shortest: several tool turns fit the tiny model's 1,024
      // positions (the default smollm2 format is covered in test/backend).
      "--tool-call-parser",
      "mistral",
    ];
    const started = await Promise.allSettled([
      startGateway(masterSecret, port),
      ...backendSecrets.map((secret) => startBackend(backendArgs(secret))),
    ]);
    for (const result of started.slice(1)) {
      if (result.status === "fulfilled") backends.push(result.value as Backend);
    }
    if (started[0].status === "fulfilled") gateway = started[0].value;
    const failed = started.find((result) => result.status === "rejected");
    if (failed) throw failed.reason;

    direct = new OpenAI({
      baseURL: `${backends[0]?.url}/v1`,
      apiKey: backendSecrets[0],
      maxRetries: 0,
    });
    admin = new GatewayAdmin(gateway.url, gateway.adminToken);
    await admin.registerBaseModel(baseModel, join(fixturesDir, baseModel));
    for (const [i, backend] of backends.entries()) {
      // the secret the admin API answers is the one the backend was started with
      expect(await admin.registerBackend(`cpu-${i}`, backend.url, baseModel)).toBe(
        backendSecrets[i],
      );
    }
    acme = await admin.createTenant("acme");
    globex = await admin.createTenant("globex");
    // Both tenants name an adapter "bot", with different weights.
    await uploadAdapter(gateway.url, acme.key, "bot", fixtureAdapter("tiny-r4"));
    await uploadAdapter(gateway.url, acme.key, "support", fixtureAdapter("tiny-r8"));
    await uploadAdapter(gateway.url, globex.key, "bot", fixtureAdapter("tiny-r16-rslora"));
  });

  afterAll(async () => {
    await Promise.all([gateway?.stop(), ...backends.map((backend) => backend.stop())]);
  });

  it("chats with the base model and two tenants' adapters, each as the backend answers", async () => {
    const cases = [
      { tenant: acme, model: baseModel, fixture: baseModel },
      { tenant: acme, model: "bot", fixture: "tiny-r4" },
      { tenant: acme, model: "acme/bot", fixture: "tiny-r4" },
      { tenant: acme, model: "support", fixture: "tiny-r8" },
      { tenant: globex, model: "bot", fixture: "tiny-r16-rslora" },
    ];
    const prompt = "Tell me about the sea";
    const answers = new Map<string, string>();
    for (const { tenant, model, fixture } of cases) {
      const started = performance.now();
      const { data: answer, response } = await tenantClient(tenant.key)
        .chat.completions.create(chat(model, prompt))
        .withResponse();
      const elapsedMs = performance.now() - started;
      const own = await direct.chat.completions.create(chat(fixture, prompt));
      expect(answer.model).toBe(model);
      expect(textOf(answer)).toBe(textOf(own));
      expect(answer.usage).toEqual(own.usage);
      const requestId = response.headers.get("x-request-id") ?? "";
      expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
      // The gateway's own time leaves out the backend's: with what the backend logged for
      // this request id, the two fit in what the client waited (each rounded to 1 ms).
      const gatewayMs = response.headers.get("x-lorafleet-gateway-ms") ?? "";
      expect(gatewayMs).toMatch(/^\d+$/);
      const backendMs = backendRequestMs(requestId);
      expect(backendMs).toBeGreaterThan(0);
      expect(Number(gatewayMs) + backendMs).toBeLessThanOrEqual(elapsedMs + 2);
      answers.set(`${tenant.name}:${model}`, textOf(answer));
    }
    // The two tenants' "bot" adapters are different adapters, and neither is the base model.
    const distinct = new Set([
      answers.get(`acme:${baseModel}`),
      answers.get("acme:bot"),
      answers.get("globex:bot"),
    ]);
    expect(distinct.size).toBe(3);
    // The backends had the adapters only from the gateway, through its signed URLs.
    expect(gateway.logs()).toMatch(
      /GET \/internal\/adapters\/ad_\w+\/adapter_model\.safetensors\S* 200 OK/,
    );

    const models = await tenantClient(globex.key).models.list();
    expect(models.data.map((m) => m.id).sort()).toEqual(["bot", baseModel]);
  });

  it("serves a signed adapter URL only with the secret of the backend it was signed for", async () => {
    const tenant = await admin.createTenant("leaked-url");
    const adapter = await uploadAdapter(
      gateway.url,
      tenant.key,
      "leaky",
      fixtureAdapter("tiny-r8"),
    );
    // A URL as the gateway signs one for cpu-0 (gateway/README.md, "Gateway -> backend"), as if leaked.
    const file = "adapter_model.safetensors";
    const exp = Math.floor(Date.now() / 1000) + 120;
    const sig = createHmac("sha256", gateway.urlSigningKey)
      .update(`${adapter.id}/${file}/cpu-0/${exp}`)
      .digest("base64url");
    const url = `${gateway.url}/internal/adapters/${adapter.id}/${file}?backend=cpu-0&exp=${exp}&sig=${sig}`;
    const get = (secret?: string) =>
      fetch(url, { headers: secret === undefined ? {} : { authorization: `Bearer ${secret}` } });
    const refusal = async (response: Response) => [
      response.status,
      ((await response.json()) as { error: { code: string } }).error.code,
    ];

    expect(await refusal(await get())).toEqual([401, "backend_credential_required"]);
    expect(await refusal(await get(masterSecret))).toEqual([401, "invalid_backend_credential"]);
    expect(await refusal(await get(backendSecrets[1]))).toEqual([403, "url_for_another_backend"]);
    const own = await get(backendSecrets[0]);
    expect(own.status).toBe(200);
    expect(own.headers.get("x-lorafleet-sha256")).toBe(adapter.sha256);
    const fixture = readFileSync(join(fixtureAdapter("tiny-r8"), file));
    expect(Buffer.from(await own.arrayBuffer()).equals(fixture)).toBe(true);
  });

  it("streams the backend's greedy text, with the usage chunk only when asked for", async () => {
    for (const [tenant, model, fixture] of [
      [acme, "support", "tiny-r8"],
      [globex, "bot", "tiny-r16-rslora"],
    ] as const) {
      const own = await direct.chat.completions.create(chat(fixture, "Stream a story", 12));
      for (const includeUsage of [true, false]) {
        const stream = await tenantClient(tenant.key).chat.completions.create({
          ...chat(model, "Stream a story", 12),
          stream: true,
          stream_options: { include_usage: includeUsage },
        });
        let text = "";
        const usages: unknown[] = [];
        let contentChunks = 0;
        for await (const chunk of stream) {
          const delta = chunk.choices[0]?.delta.content;
          if (delta) {
            text += delta;
            contentChunks += 1;
          }
          if (chunk.usage) usages.push(chunk.usage);
        }
        expect(text).toBe(textOf(own));
        expect(contentChunks).toBeGreaterThan(1);
        expect(usages).toEqual(includeUsage ? [own.usage] : []);
      }
    }
  });

  it("completes several prompts in one call as the backend does", async () => {
    const params = {
      prompt: ["Once upon a time", "In a galaxy far away", "The recipe calls for"],
      max_tokens: 6,
      temperature: 0,
      ignore_eos: true,
    };
    const through = await tenantClient(acme.key).completions.create({
      ...params,
      model: "bot",
    } as OpenAI.CompletionCreateParamsNonStreaming);
    const own = await direct.completions.create({
      ...params,
      model: "tiny-r4",
    } as OpenAI.CompletionCreateParamsNonStreaming);
    const texts = (answer: OpenAI.Completion) =>
      [...answer.choices].sort((a, b) => a.index - b.index).map((c) => c.text);
    expect(through.model).toBe("bot");
    expect(texts(through)).toEqual(texts(own));
    expect(through.usage).toEqual(own.usage);
  });

  it("refuses what the backend refuses with the backend's own error, before any backend sees it", async () => {
    const bad: [string, unknown][] = [
      ["/v1/chat/completions", { ...chat(baseModel, "hi"), messages: [] }],
      ["/v1/chat/completions", { ...chat(baseModel, "hi"), temperature: -1 }],
      ["/v1/chat/completions", { ...chat(baseModel, "hi"), n: 100 }],
      ["/v1/chat/completions", { ...chat(baseModel, "hi"), tools: [{ type: "function" }] }],
      ["/v1/chat/completions", { ...chat(baseModel, "hi"), messages: [{ role: "bot" }] }],
      ["/v1/chat/completions", [1]],
      ["/v1/completions", { model: baseModel, prompt: [[]] }],
      ["/v1/completions", { model: baseModel, prompt: "hi", echo: true }],
    ];
    const post = (url: string, key: string, body: unknown, requestId: string) =>
      fetch(url, {
        method: "POST",
        headers: {
          authorization: `Bearer ${key}`,
          "content-type": "application/json",
          "x-request-id": requestId,
        },
        body: JSON.stringify(body),
      });
    for (const [i, [path, body]] of bad.entries()) {
      const edge = await post(`${gateway.url}${path}`, acme.key, body, `same-refusal-${i}`);
      const own = await post(`${backends[0]?.url}${path}`, backendSecrets[0] ?? "", body, "own");
      expect([edge.status, own.status]).toEqual([400, 400]);
      expect(await edge.json()).toEqual(await own.json());
    }
    for (const backend of backends) expect(backend.logs()).not.toContain("same-refusal-");
    // null is "not set" for the backend, so the gateway serves it too (it used to refuse stream: null)
    const nulls = { ...chat(baseModel, "hi"), stream: null, n: null, stop: null };
    const served = await post(`${gateway.url}/v1/chat/completions`, acme.key, nulls, "nulls");
    expect(served.status).toBe(200);
    expect(textOf((await served.json()) as OpenAI.ChatCompletion)).toBe(
      await directText(baseModel, "hi"),
    );
  });

  it("answers 401 to an unknown key and to a revoked one", async () => {
    const unknown = tenantClient(`lf_live_${"x".repeat(40)}`);
    await expect(unknown.chat.completions.create(chat(baseModel, "hi"))).rejects.toBeInstanceOf(
      AuthenticationError,
    );
    const { id, key } = await admin.issueKey(acme.id);
    const client = tenantClient(key);
    expect((await client.models.list()).data.length).toBeGreaterThan(0);
    await admin.revokeKey(id);
    const refused = await client.chat.completions.create(chat(baseModel, "hi")).catch((e) => e);
    expect(refused).toBeInstanceOf(AuthenticationError);
    expect(refused.status).toBe(401);
  });

  it("answers 404 to another tenant's adapter, as to one that does not exist", async () => {
    const client = tenantClient(globex.key);
    for (const model of ["support", "acme/bot", "acme/support", "nobody-has-this"]) {
      const error = await client.chat.completions.create(chat(model, "hi")).catch((e) => e);
      expect(error).toBeInstanceOf(NotFoundError);
      expect(error.code).toBe("model_not_found");
    }
    const response = await fetch(`${gateway.url}/v1/adapters/support`, {
      headers: { authorization: `Bearer ${globex.key}` },
    });
    expect(response.status).toBe(404);
  });

  it("answers 429 with Retry-After past the tenant's requests per minute, exactly", async () => {
    const tenant = await admin.createTenant("throttled", { requests_per_minute: 5 });
    const client = tenantClient(tenant.key);
    // The window is the UTC minute: start well inside one so all requests share it.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 50_000) await new Promise((r) => setTimeout(r, 60_500 - intoMinute));
    const outcomes = await Promise.allSettled(
      Array.from({ length: 9 }, (_, i) => client.chat.completions.create(chat(baseModel, `n${i}`))),
    );
    const refused = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason] : []));
    expect(outcomes.length - refused.length).toBe(5);
    expect(refused).toHaveLength(4);
    for (const error of refused) {
      expect(error).toBeInstanceOf(RateLimitError);
      expect(error.code).toBe("requests_per_minute");
      expect(Number(error.headers.get("retry-after"))).toBeGreaterThan(0);
    }
  });

  it("records usage once per request, with the backend's token counts", async () => {
    const tenant = await admin.createTenant("ledger");
    await uploadAdapter(gateway.url, tenant.key, "notes", fixtureAdapter("tiny-r8"));
    const client = tenantClient(tenant.key);
    const expected = new Map<string, { requests: number; prompt: number; completion: number }>();
    const count = (model: string, usage: OpenAI.CompletionUsage | undefined) => {
      const line = expected.get(model) ?? { requests: 0, prompt: 0, completion: 0 };
      line.requests += 1;
      line.prompt += usage?.prompt_tokens ?? 0;
      line.completion += usage?.completion_tokens ?? 0;
      expected.set(model, line);
    };
    for (const model of [baseModel, "notes"]) {
      count(model, (await client.chat.completions.create(chat(model, "count me"))).usage);
      // A stream without include_usage still reports its usage to the gateway.
      const fixture = model === baseModel ? baseModel : "tiny-r8";
      const own = await direct.chat.completions.create(chat(fixture, "count me too", 5));
      const stream = await client.chat.completions.create({
        ...chat(model, "count me too", 5),
        stream: true,
      });
      for await (const _ of stream);
      count(model, own.usage);
    }
    // Refused before model resolution: no usage row.
    await client.chat.completions.create(chat("not-a-model", "x")).catch(() => null);

    type Summary = {
      requests: number;
      data: { model: string; requests: number; prompt_tokens: number; completion_tokens: number }[];
    };
    const read = async () =>
      (await (
        await fetch(`${gateway.url}/v1/usage`, {
          headers: { authorization: `Bearer ${tenant.key}` },
        })
      ).json()) as Summary;
    await until("4 usage rows", async () => ((await read()).requests >= 4 ? true : undefined));
    // Late duplicates would show up now.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const summary = await read();
    expect(summary.requests).toBe(4);
    expect(
      Object.fromEntries(
        summary.data.map((line) => [
          line.model,
          {
            requests: line.requests,
            prompt: line.prompt_tokens,
            completion: line.completion_tokens,
          },
        ]),
      ),
    ).toEqual(Object.fromEntries(expected));
  });

  it("runs a Batch API job of 50 lines to the backend's own answers", async () => {
    const models = [
      [baseModel, baseModel],
      ["bot", "tiny-r4"],
      ["support", "tiny-r8"],
    ] as const;
    // Every fifth line asks for JSON of a schema: structured outputs in the Batch API.
    const schema = {
      type: "object",
      properties: { n: { type: "integer", minimum: 0, maximum: 99 } },
      required: ["n"],
      additionalProperties: false,
    };
    const lines = Array.from({ length: 50 }, (_, i) => {
      const [model, fixture] = models[i % models.length] as (typeof models)[number];
      const json = i % 5 === 0;
      return {
        customId: `line-${i}`,
        model,
        fixture,
        prompt: `Batch line number ${i}`,
        extra: (json
          ? {
              max_tokens: 40,
              response_format: { type: "json_schema", json_schema: { name: "n", schema } },
            }
          : {}) as Partial<ChatCompletionCreateParamsNonStreaming>,
      };
    });
    const expected = await Promise.all(
      lines.map(async (l) =>
        textOf(
          await direct.chat.completions.create({ ...chat(l.fixture, l.prompt, 6), ...l.extra }),
        ),
      ),
    );

    const client = tenantClient(acme.key);
    const jsonl = lines
      .map((l) =>
        JSON.stringify({
          custom_id: l.customId,
          method: "POST",
          url: "/v1/chat/completions",
          body: { ...chat(l.model, l.prompt, 6), ...l.extra },
        }),
      )
      .join("\n");
    const input = await client.files.create({
      file: await toFile(Buffer.from(jsonl), "batch.jsonl"),
      purpose: "batch",
    });
    const created = await client.batches.create({
      input_file_id: input.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
    });
    const batch = await until(
      "the batch to finish",
      async () => {
        const current = await client.batches.retrieve(created.id);
        return ["in_progress", "validating", "finalizing"].includes(current.status)
          ? undefined
          : current;
      },
      90_000,
    );
    expect(batch.status).toBe("completed");
    expect(batch.request_counts).toEqual({ total: 50, completed: 50, failed: 0 });
    const output = await (await client.files.content(batch.output_file_id ?? "")).text();
    const results = output
      .trim()
      .split("\n")
      .map(
        (line) =>
          JSON.parse(line) as {
            custom_id: string;
            response: { status_code: number; body: OpenAI.ChatCompletion };
          },
      );
    expect(results.map((r) => r.custom_id)).toEqual(lines.map((l) => l.customId));
    for (const [i, result] of results.entries()) {
      expect(result.response.status_code).toBe(200);
      expect(result.response.body.model).toBe(lines[i]?.model);
      expect(textOf(result.response.body)).toBe(expected[i]);
      if (i % 5 === 0) expect(Number.isInteger(JSON.parse(expected[i] ?? "").n)).toBe(true);
    }
  });

  it("parses a zod-schema answer through the gateway (chat.completions.parse)", async () => {
    const Weather = z.object({
      city: z.string().max(12),
      celsius: z.number().int().min(-40).max(50),
      sunny: z.boolean(),
    });
    const completion = await tenantClient(acme.key).chat.completions.parse({
      model: "support",
      messages: [{ role: "user", content: "The weather in Paris, as JSON." }],
      response_format: zodResponseFormat(Weather, "weather"),
      max_tokens: 200,
      temperature: 1,
      seed: 4,
    });
    const parsed = completion.choices[0]?.message.parsed;
    expect(parsed).not.toBeNull();
    expect(Weather.parse(parsed)).toEqual(parsed);
    // A schema that is not one reaches the backend, whose 400 the client gets as it is.
    const bad = await tenantClient(acme.key)
      .chat.completions.create({
        ...chat("support", "hi"),
        response_format: {
          type: "json_schema",
          json_schema: { name: "x", schema: { type: "strng" } },
        },
      })
      .catch((e) => e);
    expect([bad.status, bad.code, bad.param]).toEqual([
      400,
      "invalid_schema",
      "response_format.json_schema.schema",
    ]);
  });

  it("runs a tool loop over three turns: streamed calls assembled by the client, then a JSON answer", async () => {
    const client = tenantClient(globex.key);
    const getWeather = zodFunction({
      name: "get_weather",
      description: "The weather in a city",
      parameters: z.object({ city: z.string().max(10) }),
    });
    const messages: ChatCompletionMessageParam[] = [
      { role: "user", content: "Weather in Paris and Rome?" },
    ];
    const promptTokens: number[] = [];
    for (const turn of [0, 1]) {
      // The client's stream helper assembles the calls from their deltas.
      const stream = client.chat.completions.stream({
        model: "bot",
        messages,
        tools: [getWeather],
        tool_choice: "required",
        // A model with random weights would add calls to a parallel list until max_tokens.
        parallel_tool_calls: false,
        max_tokens: 100,
        temperature: 1,
        seed: turn,
        stream_options: { include_usage: true },
      });
      const final = await stream.finalChatCompletion();
      const choice = final.choices[0];
      expect(choice?.finish_reason).toBe("tool_calls");
      const calls = choice?.message.tool_calls ?? [];
      expect(calls).toHaveLength(1); // parallel_tool_calls: false
      for (const call of calls) {
        if (call.type !== "function") throw new Error(call.type);
        expect(call.function.name).toBe("get_weather");
        expect(getWeather.$parseRaw(call.function.arguments)).toEqual(
          call.function.parsed_arguments,
        );
      }
      promptTokens.push(final.usage?.prompt_tokens ?? 0);
      messages.push({ role: "assistant", content: null, tool_calls: calls });
      for (const call of calls)
        messages.push({ role: "tool", tool_call_id: call.id, content: "18 C, sunny" });
    }
    const Summary = z.object({ sunny: z.boolean(), note: z.string().max(8) });
    const summarize = (history: ChatCompletionMessageParam[]) =>
      client.chat.completions.parse({
        model: "bot",
        messages: history,
        tools: [getWeather],
        tool_choice: "none",
        response_format: zodResponseFormat(Summary, "summary"),
        max_tokens: 60,
        temperature: 0,
      });
    const answer = await summarize(messages);
    expect(Summary.parse(answer.choices[0]?.message.parsed)).toBeTruthy();
    // Each turn's prompt holds the turns before it: the calls and their results.
    expect(promptTokens[1]).toBeGreaterThan(promptTokens[0] as number);
    const withoutHistory = await summarize(messages.slice(0, 1));
    expect(answer.usage?.prompt_tokens).toBeGreaterThan(
      (withoutHistory.usage?.prompt_tokens ?? 0) + 60,
    );
  });

  it("runs tools with the client's runTools, the legacy functions too", async () => {
    const client = tenantClient(acme.key);
    const cities: string[] = [];
    const runner = client.chat.completions.runTools(
      {
        model: baseModel,
        messages: [{ role: "user", content: "What is the weather?" }],
        tools: [
          {
            type: "function",
            function: {
              name: "get_weather",
              description: "The weather in a city",
              function: (args: { city: string }) => {
                cities.push(args.city);
                return "sunny";
              },
              parse: JSON.parse,
              parameters: {
                type: "object",
                properties: { city: { type: "string", maxLength: 8 } },
                required: ["city"],
                additionalProperties: false,
              },
            },
          },
        ],
        tool_choice: "required",
        parallel_tool_calls: false,
        max_tokens: 100,
        temperature: 1,
        seed: 11,
      },
      { maxChatCompletions: 2 },
    );
    await runner.done();
    expect(cities.length).toBeGreaterThanOrEqual(2);
    for (const city of cities) expect(city.length).toBeLessThanOrEqual(8);
    const legacy = await client.chat.completions.create({
      model: baseModel,
      messages: [{ role: "user", content: "Weather?" }],
      functions: [
        {
          name: "get_weather",
          parameters: { type: "object", properties: {}, additionalProperties: false },
        },
      ],
      function_call: { name: "get_weather" },
      max_tokens: 100,
    });
    expect(legacy.choices[0]?.finish_reason).toBe("function_call");
    expect(legacy.choices[0]?.message.function_call).toEqual({
      name: "get_weather",
      arguments: "{}",
    });
  });

  // Last: it stops a backend.
  it("fails over when one of two backends stops mid-run, losing no request", async () => {
    const tenant = await admin.createTenant("failover");
    const client = tenantClient(tenant.key);
    const linesOf = (n: number) =>
      until(`${n} gateway request lines`, async () => {
        const lines = requestLines(gateway, tenant.id);
        return lines.length >= n ? lines : undefined;
      });
    await client.chat.completions.create(chat(baseModel, "which backend?"));
    const victimId = (await linesOf(1))[0]?.backendId;
    const victimIndex = backends.findIndex((_, i) => `cpu-${i}` === victimId);
    const victim = backends[victimIndex] as Backend;
    const survivorId = `cpu-${1 - victimIndex}`;

    const prompts = Array.from({ length: 24 }, (_, i) => `Failover request ${i}`);
    const expected = await Promise.all(prompts.map((p) => directText(baseModel, p, 24)));
    let done = 0;
    let stopping: Promise<void> | null = null;
    const answers: string[] = [];
    const worker = async (first: number) => {
      for (let i = first; i < prompts.length; i += 4) {
        answers[i] = textOf(
          await client.chat.completions.create(chat(baseModel, prompts[i] as string, 24)),
        );
        done += 1;
        if (done === 4) stopping = victim.stop();
      }
    };
    await Promise.all([0, 1, 2, 3].map(worker));
    await stopping;
    // SIGTERM drains: the backend finished what it had and exited cleanly
    expect(victim.process.exitCode).toBe(0);
    expect(answers).toEqual(expected);
    // Mid-run: the stopped backend answered part of the run, the other one the rest
    // (what the stopped one failed with 503 while shutting down was retried there).
    const run = (await linesOf(25)).slice(1);
    expect(run.every((line) => line.status === 200)).toBe(true);
    const byVictim = run.filter((line) => line.backendId === victimId).length;
    expect(byVictim).toBeGreaterThan(0);
    expect(run.filter((line) => line.backendId === survivorId)).toHaveLength(24 - byVictim);

    // New requests, streamed ones too, go to the survivor.
    const stream = await client.chat.completions.create({
      ...chat(baseModel, prompts[0] as string, 24),
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe(expected[0]);
    expect((await linesOf(26))[25]?.backendId).toBe(survivorId);

    const usage = await until("26 usage rows", async () => {
      const response = await fetch(`${gateway.url}/v1/usage`, {
        headers: { authorization: `Bearer ${tenant.key}` },
      });
      const summary = (await response.json()) as { requests: number; data: { errors: number }[] };
      return summary.requests >= 26 ? summary : undefined;
    });
    expect(usage.requests).toBe(26);
    expect(usage.data.reduce((sum, line) => sum + line.errors, 0)).toBe(0);
  });

  // After the failover test: it stops the last backend.
  it("lets a stream finish while its backend drains, then answers 503", async () => {
    const tenant = await admin.createTenant("drained");
    const client = tenantClient(tenant.key);
    const last = backends.find((backend) => backend.process.exitCode === null) as Backend;
    const own = new OpenAI({
      baseURL: `${last.url}/v1`,
      apiKey: backendSecrets[backends.indexOf(last)],
      maxRetries: 0,
    });
    const expected = await own.chat.completions.create(chat(baseModel, "A long story", 300));
    const stream = await client.chat.completions.create({
      ...chat(baseModel, "A long story", 300),
      stream: true,
    });
    let text = "";
    let stopped: Promise<void> | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      // SIGTERM while the stream runs: the backend drains running requests before it exits.
      stopped ??= last.stop();
    }
    expect(text).toBe(textOf(expected));
    await stopped;

    const refused = await client.chat.completions.create(chat(baseModel, "hi")).catch((e) => e);
    expect(refused).toBeInstanceOf(APIError);
    expect(refused.status).toBe(503);
    expect(refused.code).toBe("no_backend_available");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);

    const lines = await until("2 gateway request lines", async () => {
      const found = requestLines(gateway, tenant.id);
      return found.length >= 2 ? found : undefined;
    });
    expect(lines.map((line) => line.status)).toEqual([200, 503]);
  });
});
