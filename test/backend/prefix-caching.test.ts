// Prefix caching end to end: two real backends (tiny-llama, fp32 on CPU, the real Python
// executor), one with the cache and one without, must answer 50 random multi-turn chat
// sessions over adapters and the base model with the same greedy tokens; the cache is
// keyed by tenant (or the gateway's cache salt) and by the adapter's content.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, fixturesDir, haveFixtures, startBackend } from "./backend-process.ts";

const SECRET = "test-backend-secret-0123456789";
const MODELS = ["tiny-llama", "tiny-r4", "tiny-r8", "tiny-r16", "tiny-mix-03"];
const WORDS = "alpha beta gamma delta river stone cloud seven orange quiet lamp north".split(" ");

interface Message {
  role: "system" | "user" | "assistant";
  content: string;
}
interface Session {
  model: string;
  system: string;
  turns: { user: string; maxTokens: number }[];
}
interface Answer {
  text: string;
  logprobs: number[];
  promptTokens: number;
  cachedTokens: number;
}

const sentence = fc.array(fc.constantFrom(...WORDS), { minLength: 3, maxLength: 24 });
/** Each model has 3 system prompts its sessions share (a SaaS app's, per adapter). */
const sessions: Session[] = fc
  .sample(
    fc.record({
      model: fc.constantFrom(...MODELS),
      system: fc.nat(2),
      turns: fc.array(
        fc.record({
          user: sentence.map((w) => w.join(" ")),
          maxTokens: fc.integer({ min: 2, max: 10 }),
        }),
        { minLength: 2, maxLength: 4 },
      ),
    }),
    { seed: 23, numRuns: 50 },
  )
  .map((s) => ({
    model: s.model,
    system: `You are assistant ${s.system} of ${s.model}. ${"Answer briefly and politely. ".repeat(1 + s.system)}`,
    turns: s.turns,
  }));

describe.skipIf(!haveFixtures)("prefix caching end to end (tiny-llama fp32 on CPU)", () => {
  let on: Backend;
  let off: Backend;
  const common = ["--backend-secret", SECRET, "--num-pages", "65536", "--max-num-seqs", "16"];

  beforeAll(async () => {
    [on, off] = await Promise.all([
      startBackend(common),
      startBackend([...common, "--enable-prefix-caching", "false"]),
    ]);
  });
  afterAll(async () => {
    await Promise.all([on?.stop(), off?.stop()]);
  });

  const post = async (backend: Backend, path: string, body: unknown) => {
    const response = await fetch(`${backend.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${SECRET}` },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    expect(response.status, text).toBe(200);
    return text;
  };

  const chat = async (
    backend: Backend,
    model: string,
    messages: Message[],
    maxTokens: number,
    lorafleet?: { tenant: string; cache_salt?: string },
  ): Promise<Answer> => {
    const body = JSON.parse(
      await post(backend, "/v1/chat/completions", {
        model,
        messages,
        max_tokens: maxTokens,
        temperature: 0,
        ignore_eos: true,
        logprobs: true,
        ...(lorafleet ? { lorafleet: { ...lorafleet, adapter: null } } : {}),
      }),
    );
    return {
      text: body.choices[0].message.content,
      logprobs: body.choices[0].logprobs.content.map((t: { logprob: number }) => t.logprob),
      promptTokens: body.usage.prompt_tokens,
      cachedTokens: body.usage.prompt_tokens_details.cached_tokens,
    };
  };

  it("answers 50 multi-turn sessions over adapters and the base model with the same tokens, cache on or off", async () => {
    let cached = 0;
    let reusable = 0;
    const runSession = async (session: Session) => {
      const messages: Message[] = [{ role: "system", content: session.system }];
      let previousPrompt = 0;
      for (const [turn, { user, maxTokens }] of session.turns.entries()) {
        messages.push({ role: "user", content: user });
        const [withCache, without] = await Promise.all([
          chat(on, session.model, messages, maxTokens),
          chat(off, session.model, messages, maxTokens),
        ]);
        expect(withCache.text, `${session.model} turn ${turn}`).toBe(without.text);
        expect(withCache.promptTokens).toBe(without.promptTokens);
        // fp32: the same tokens; the logprobs differ only by summation order
        withCache.logprobs.forEach((logprob, i) => {
          expect(Math.abs(logprob - (without.logprobs[i] ?? 0))).toBeLessThan(1e-3);
        });
        expect(without.cachedTokens).toBe(0);
        expect(withCache.cachedTokens).toBeLessThan(withCache.promptTokens);
        // A later turn finds at least the blocks of the turn before (its whole prompt).
        if (turn > 0)
          expect(withCache.cachedTokens).toBeGreaterThanOrEqual(
            16 * Math.floor(previousPrompt / 16) - 16,
          );
        cached += withCache.cachedTokens;
        reusable += turn > 0 ? previousPrompt : 0;
        previousPrompt = withCache.promptTokens;
        messages.push({ role: "assistant", content: withCache.text });
      }
    };
    // 8 sessions at a time: turns of different sessions share steps (and system prompts).
    const queue = [...sessions];
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let s = queue.shift(); s !== undefined; s = queue.shift()) await runSession(s);
      }),
    );
    expect(cached).toBeGreaterThan(0.8 * reusable);
    const metrics = async (backend: Backend) =>
      (
        await fetch(`${backend.url}/metrics`, { headers: { authorization: `Bearer ${SECRET}` } })
      ).text();
    const value = (text: string, name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
    const [onMetrics, offMetrics] = await Promise.all([metrics(on), metrics(off)]);
    expect(value(onMetrics, "lorafleet_prefix_cache_hit_tokens_total")).toBeGreaterThanOrEqual(
      cached,
    );
    expect(value(onMetrics, 'lorafleet_pool_pages\\{use="cached"\\}')).toBeGreaterThan(0);
    expect(value(offMetrics, "lorafleet_prefix_cache_hit_tokens_total")).toBe(0);
    expect(value(offMetrics, "lorafleet_prefix_cache_queries_total")).toBe(
      value(onMetrics, "lorafleet_prefix_cache_queries_total"),
    );
  }, 600_000);

  it("never lets tenant B, or another cache salt, find tenant A's prompt", async () => {
    const messages: Message[] = [
      { role: "system", content: "A private system prompt of tenant A, long enough for blocks." },
      { role: "user", content: "What did the secret memo say about the merger?" },
    ];
    const a = { tenant: "tenant-a" };
    expect((await chat(on, "tiny-llama", messages, 2, a)).cachedTokens).toBe(0);
    const again = await chat(on, "tiny-llama", messages, 2, a);
    expect(again.cachedTokens).toBeGreaterThan(16);
    expect((await chat(on, "tiny-llama", messages, 2, { tenant: "tenant-b" })).cachedTokens).toBe(
      0,
    );
    const salted = { tenant: "tenant-a", cache_salt: "tenant-a:key-2" };
    expect((await chat(on, "tiny-llama", messages, 2, salted)).cachedTokens).toBe(0);
    // a direct caller is tenant "default": a cache of its own
    expect((await chat(on, "tiny-llama", messages, 2)).cachedTokens).toBe(0);
  });

  it("does not reuse an adapter's KV once other weights are loaded under its name", async () => {
    const messages: Message[] = [{ role: "user", content: WORDS.join(" ") }];
    const load = (path: string) =>
      post(on, "/v1/load_lora_adapter", { lora_name: "swap", lora_path: path });
    await load(`${fixturesDir}/adapters/tiny-r8`);
    await chat(on, "swap", messages, 3);
    expect((await chat(on, "swap", messages, 3)).cachedTokens).toBeGreaterThan(16);
    await post(on, "/v1/unload_lora_adapter", { lora_name: "swap" });
    await load(`${fixturesDir}/adapters/tiny-r16`);
    const swapped = await chat(on, "swap", messages, 3);
    expect(swapped.cachedTokens).toBe(0);
    expect(swapped.text).toBe((await chat(off, "tiny-r16", messages, 3)).text);
  });
});
