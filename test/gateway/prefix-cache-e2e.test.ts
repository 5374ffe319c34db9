// The prefix cache's tenant isolation end to end (#23; vLLM CVE-2025-46570): the official
// `openai` client against the gateway (`wrangler dev`) in front of a real backend
// (tiny-llama, the Python executor on CPU, prefix caching on). The salt the gateway sets
// keeps another tenant's and, unless the tenant opts in, another key's identical prompt
// from the cache; `cached_tokens` reaches answers, streams and usage rows.
import { randomBytes } from "node:crypto";
import OpenAI from "openai";
import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { haveFixtures } from "../backend/backend-process.ts";
import type { Tenant } from "./gateway-admin.ts";
import { type Stack, startStack } from "./gateway-stack.ts";

/** A system prompt of several 16-token blocks, the same for everyone. */
const messages: ChatCompletionMessageParam[] = [
  {
    role: "system",
    content:
      "You are the support assistant of a lighthouse company. Answer in one short sentence, " +
      "politely, and never mention the weather, the sea or the keepers by name.",
  },
  { role: "user", content: "When does the lamp of the north lighthouse turn on?" },
];
const request = { model: "tiny-llama", messages, max_tokens: 4, temperature: 0 };

type Row = { request_id: string; prompt_tokens_details: { cached_tokens: number } };

describe.skipIf(!haveFixtures)(
  "the prefix cache between tenants and keys, through wrangler dev",
  () => {
    let stack: Stack;
    let a: Tenant;
    let b: Tenant;
    let otherKeyOfA: string;
    const client = (key: string) =>
      new OpenAI({ apiKey: key, baseURL: `${stack.gateway.url}/v1`, maxRetries: 0 });
    const cached = async (key: string, requestId: string) => {
      const answer = await client(key).chat.completions.create(request, {
        headers: { "x-request-id": requestId },
      });
      return answer.usage?.prompt_tokens_details?.cached_tokens;
    };

    beforeAll(async () => {
      stack = await startStack(randomBytes(16).toString("hex"));
      a = await stack.admin.createTenant("tenant-a");
      b = await stack.admin.createTenant("tenant-b");
      otherKeyOfA = (await stack.admin.issueKey(a.id)).key;
    });
    afterAll(async () => {
      await stack?.stop();
    });

    it("hits only the key's own cache, the tenant's once it opts in, never another tenant's", async () => {
      expect(await cached(a.key, "a-1")).toBe(0);
      const hit = await cached(a.key, "a-2");
      expect(hit).toBeGreaterThan(0);
      expect((hit ?? 0) % 16).toBe(0); // whole blocks
      expect(await cached(b.key, "b-1")).toBe(0);
      expect(await cached(otherKeyOfA, "a-other-1")).toBe(0);

      await stack.admin.call("PATCH", `/admin/tenants/${a.id}`, { share_prefix_cache: true });
      expect(await cached(a.key, "a-shared-1")).toBe(0); // a new salt: nothing cached under it
      expect(await cached(otherKeyOfA, "a-other-shared")).toBe(hit);
      expect(await cached(b.key, "b-2")).toBe(hit); // B's own earlier request
    });

    it("carries cached_tokens into the stream's usage and the usage rows", async () => {
      const stream = await client(b.key).chat.completions.create(
        { ...request, stream: true, stream_options: { include_usage: true } },
        { headers: { "x-request-id": "b-stream" } },
      );
      let usage: OpenAI.CompletionUsage | null | undefined;
      for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
      const streamed = usage?.prompt_tokens_details?.cached_tokens ?? 0;
      expect(streamed).toBeGreaterThan(0);

      const rowOf = async (requestId: string) => {
        const deadline = Date.now() + 20_000;
        for (;;) {
          const response = await fetch(`${stack.gateway.url}/v1/usage/requests/${requestId}`, {
            headers: { authorization: `Bearer ${b.key}` },
          });
          const [row] = ((await response.json()) as { data: Row[] }).data;
          if (row !== undefined) return row;
          if (Date.now() > deadline) throw new Error(`no usage row for ${requestId}`);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      };
      expect((await rowOf("b-stream")).prompt_tokens_details.cached_tokens).toBe(streamed);
      expect((await rowOf("b-2")).prompt_tokens_details.cached_tokens).toBe(streamed);
      expect((await rowOf("b-1")).prompt_tokens_details.cached_tokens).toBe(0);
    });
  },
);
