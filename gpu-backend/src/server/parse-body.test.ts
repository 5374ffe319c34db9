// parseBody on a bare Hono app: the byte bound (declared or counted), strict UTF-8 and JSON.
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ApiError } from "./openai-error.ts";
import { parseBody } from "./parse-body.ts";

const app = new Hono();
app.post("/", async (c) => c.json(await parseBody(c, z.object({ a: z.string() }), 64)));
app.onError((error, c) => {
  const apiError = error instanceof ApiError ? error : new ApiError(500, "internal");
  return c.json(apiError.body, apiError.status);
});

const post = (
  body: string | Uint8Array | ReadableStream<Uint8Array>,
  headers: Record<string, string> = {},
) => app.request("/", { method: "POST", body, headers, duplex: "half" } as RequestInit);

describe("parseBody", () => {
  it("reads a JSON body within the bound", async () => {
    const response = await post(JSON.stringify({ a: "é" }));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ a: "é" });
  });

  it("refuses a body over the bound with 413, declared or streamed", async () => {
    const big = JSON.stringify({ a: "x".repeat(100) });
    const declared = await post(big);
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as ApiError["body"]).error.code).toBe("request_too_large");
    // chunked: no content-length, counted while read
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode("x".repeat(20)));
        controller.close();
      },
    });
    expect((await post(chunks)).status).toBe(413);
  });

  it("refuses bytes that are not UTF-8 instead of turning them into U+FFFD", async () => {
    const bytes = new Uint8Array([...new TextEncoder().encode('{"a":"'), 0xff, 0xfe, 0x22, 0x7d]);
    const response = await post(bytes);
    expect(response.status).toBe(400);
    expect(((await response.json()) as ApiError["body"]).error).toMatchObject({
      code: "invalid_json",
      message: "the request body is not valid UTF-8",
    });
  });

  it("refuses malformed JSON and names schema violations", async () => {
    expect((await post('{"a":')).status).toBe(400);
    expect((await post("")).status).toBe(400);
    const wrong = await post(JSON.stringify({ a: 1 }));
    expect(((await wrong.json()) as ApiError["body"]).error.param).toBe("a");
  });
});
