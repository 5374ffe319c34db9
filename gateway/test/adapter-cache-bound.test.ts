// The stated bound of adapter deletion (src/adapters/adapter-resolver.ts): an isolate that
// cached an adapter keeps routing to it for at most 10 s after the deletion removed its KV
// entry (and 60 s more where KV still holds it elsewhere), as keys.test.ts checks for keys.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  adapterFiles,
  call,
  createTenant,
  registerBaseModel,
  registerPeerBackend,
  tinyModel,
  upload,
  uploadForm,
} from "./helpers/gateway-client.ts";
import { isolate } from "./helpers/isolate.ts";
import { buildAdapter } from "./helpers/safetensors-builder.ts";

const isolateCacheMs = 10_000;

describe("adapter deletion", () => {
  it("reaches another isolate within 10 s of the KV entry going", async () => {
    const model = await registerBaseModel(tinyModel());
    await registerPeerBackend(model.name);
    const tenant = await createTenant();
    expect(
      (await upload(tenant.key, uploadForm("bot", adapterFiles(buildAdapter(model))))).status,
    ).toBe(201);
    const other = isolate(Date.now());
    const chat = () =>
      other.fetch("/v1/chat/completions", tenant.key, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "bot",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 2,
        }),
      });
    expect((await chat()).status).toBe(200); // now cached in `other`
    expect((await call(tenant.key, "DELETE", "/v1/adapters/bot")).status).toBe(200); // another isolate
    expect(await env.CACHE.get(`adapter:${tenant.id}:bot`)).toBeNull();
    other.clock.now += isolateCacheMs - 1;
    expect((await chat()).status).toBe(200); // stale, inside the bound
    other.clock.now += 1;
    const gone = await chat();
    expect(gone.status).toBe(404);
    expect(((await gone.json()) as { error: { code: string } }).error.code).toBe("model_not_found");
  });
});
