// Request bodies at the edge: bounded (413 before the rest is read, declared or
// streamed) and strict UTF-8 JSON (400 invalid_json), in OpenAI's error shape, never
// forwarded, never billed. Test/reliability found both through `wrangler dev`.
import { SELF } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { bodyLimits } from "../src/request-body.ts";
import {
  type BaseModelSpec,
  createTenant,
  origin,
  peerRequests,
  registerBaseModel,
  registerPeerBackend,
  type Tenant,
  tinyModel,
  usageRows,
} from "./helpers/gateway-client.ts";
import { testSecrets } from "./peer/constants.ts";

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string } };

const utf8 = (text: string) => new TextEncoder().encode(text);

function post(path: string, token: string, body: BodyInit, headers: Record<string, string> = {}) {
  return SELF.fetch(`${origin}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body,
  });
}

/** A chat body of exactly `bytes` bytes (padding in the message). */
function chatOfSize(model: string, bytes: number): Uint8Array {
  const head = `{"model":"${model}","max_tokens":1,"messages":[{"role":"user","content":"`;
  const tail = '"}]}';
  return utf8(head + "x".repeat(bytes - head.length - tail.length) + tail);
}

/** A body with no content-length: the gateway only learns its size by reading it. */
function streamed(bytes: Uint8Array, chunk = 1024 * 1024): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + chunk));
      offset += chunk;
    },
  });
}

async function expectError(res: Response, status: number, code: string): Promise<ErrorBody> {
  const body = (await res.json()) as ErrorBody;
  expect(res.status, JSON.stringify(body)).toBe(status);
  expect(Object.keys(body)).toEqual(["error"]);
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
  return body;
}

describe("request bodies", () => {
  let model: BaseModelSpec;
  let backend: string;
  let tenant: Tenant;
  beforeAll(async () => {
    model = await registerBaseModel(tinyModel());
    backend = await registerPeerBackend(model.name);
    tenant = await createTenant();
  });

  it("refuses invalid UTF-8 with 400 invalid_json instead of serving U+FFFD", async () => {
    const body = new Uint8Array([
      ...utf8(`{"model":"${model.name}","max_tokens":1,"messages":[{"role":"user","content":"`),
      0xff,
      0xfe,
      ...utf8('"}]}'),
    ]);
    const error = await expectError(
      await post("/v1/chat/completions", tenant.key, body),
      400,
      "invalid_json",
    );
    expect(error.error.message).toContain("UTF-8");
    const admin = await post("/admin/tenants", testSecrets.adminToken, body);
    await expectError(admin, 400, "invalid_json");
    expect(await peerRequests(backend)).toEqual([]);
    expect(await usageRows(tenant.id)).toEqual([]);
  });

  it("serves an inference body of exactly the limit, and refuses one byte more with 413", async () => {
    const atLimit = await post(
      "/v1/chat/completions",
      tenant.key,
      chatOfSize(model.name, bodyLimits.inference),
    );
    expect(atLimit.status).toBe(200);
    await atLimit.text();
    const over = await post(
      "/v1/chat/completions",
      tenant.key,
      chatOfSize(model.name, bodyLimits.inference + 1),
    );
    const error = await expectError(over, 413, "request_too_large");
    expect(error.error.message).toContain(String(bodyLimits.inference));
    expect(await peerRequests(backend)).toHaveLength(1);
  });

  it("refuses an oversized body sent without content-length while reading it", async () => {
    const res = await post(
      "/v1/completions",
      tenant.key,
      streamed(chatOfSize(model.name, bodyLimits.inference + 3 * 1024 * 1024)),
    );
    await expectError(res, 413, "request_too_large");
    expect(await peerRequests(backend)).toHaveLength(1);
    // and the gateway serves on
    const ok = await post(
      "/v1/chat/completions",
      tenant.key,
      streamed(chatOfSize(model.name, 4096), 100),
    );
    expect(ok.status).toBe(200);
  });

  it("bounds control-plane JSON at its own, smaller limit", async () => {
    const big = utf8(JSON.stringify({ name: "x".repeat(bodyLimits.control) }));
    await expectError(
      await post("/admin/tenants", testSecrets.adminToken, big),
      413,
      "request_too_large",
    );
    const owner = await createTenant({}, ["admin"]);
    await expectError(await post("/v1/keys", owner.key, streamed(big)), 413, "request_too_large");
    const small = await post("/v1/keys", owner.key, JSON.stringify({ scopes: ["inference"] }));
    expect(small.status).toBe(201);
  });
});
