// parseBody on a bare Hono app rendered by the server's own error mapping: the shared
// reader's refusals (@lorafleet/api, tested there byte by byte) as this server words them.
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { type OpenAIErrorBody, toApiError } from "./openai-error.ts";
import { parseBody } from "./parse-body.ts";

const app = new Hono();
app.post("/", async (c) => c.json(await parseBody(c, z.object({ a: z.string() }), 64)));
app.onError((error, c) => {
  const apiError = toApiError(error);
  return c.json(apiError.body, apiError.status);
});

const post = async (body: string | Uint8Array) => {
  const response = await app.request("/", { method: "POST", body });
  return { status: response.status, body: (await response.json()) as OpenAIErrorBody };
};

describe("parseBody", () => {
  it("reads a JSON body within the bound", async () => {
    expect(await post(JSON.stringify({ a: "é" }))).toEqual({ status: 200, body: { a: "é" } });
  });

  it("refuses a body over the bound with 413 request_too_large", async () => {
    const { status, body } = await post(JSON.stringify({ a: "x".repeat(100) }));
    expect([status, body.error.code]).toEqual([413, "request_too_large"]);
  });

  it("refuses bytes that are not UTF-8, and malformed JSON, with 400 invalid_json", async () => {
    const bytes = new Uint8Array([...new TextEncoder().encode('{"a":"'), 0xff, 0xfe, 0x22, 0x7d]);
    expect((await post(bytes)).body.error).toMatchObject({
      code: "invalid_json",
      message: "the request body is not valid UTF-8",
    });
    expect((await post('{"a":')).body.error).toMatchObject({
      code: "invalid_json",
      message: "the request body is not valid JSON",
    });
  });

  it("names the parameter a schema refuses", async () => {
    const { status, body } = await post(JSON.stringify({ a: 1 }));
    expect([status, body.error.param, body.error.code]).toEqual([400, "a", "invalid_value"]);
  });
});
