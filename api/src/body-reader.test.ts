import { describe, expect, it } from "vitest";
import { BodyNotJsonError, BodyTooLargeError, readBodyBytes, readJsonBody } from "./body-reader.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);
const request = (
  body: string | Uint8Array | ReadableStream<Uint8Array> | null,
  headers: Record<string, string> = {},
) =>
  new Request("http://server/", { method: "POST", body, headers, duplex: "half" } as RequestInit);

/** A body that arrives in `count` chunks of `size` bytes with no content-length; counts the chunks pulled. */
function chunked(count: number, size: number) {
  const stream = {
    pulled: 0,
    cancelled: false,
    body: new ReadableStream<Uint8Array>({
      pull(controller) {
        if (stream.pulled === count) return controller.close();
        stream.pulled += 1;
        controller.enqueue(utf8("x".repeat(size)));
      },
      cancel() {
        stream.cancelled = true;
      },
    }),
  };
  return stream;
}

describe("readBodyBytes", () => {
  it("reads a body of exactly the bound, and an absent body as no bytes", async () => {
    expect(await readBodyBytes(request("x".repeat(64)), 64)).toEqual(utf8("x".repeat(64)));
    expect(await readBodyBytes(request(null), 64)).toEqual(new Uint8Array(0));
    const slow = chunked(4, 16);
    expect((await readBodyBytes(request(slow.body), 64)).length).toBe(64);
  });

  it("refuses a declared length over the bound before reading anything", async () => {
    const slow = chunked(10, 20);
    const error = await readBodyBytes(request(slow.body, { "content-length": "200" }), 64).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BodyTooLargeError);
    expect((error as BodyTooLargeError).maxBytes).toBe(64);
    expect(slow.pulled).toBeLessThanOrEqual(1);
  });

  it("reads a body of declared length whole, and refuses one holding more than the bound whatever it declares", async () => {
    const body = "x".repeat(64);
    expect(await readBodyBytes(request(body, { "content-length": "64" }), 64)).toEqual(utf8(body));
    const lying = request("x".repeat(65), { "content-length": "8" });
    await expect(readBodyBytes(lying, 64)).rejects.toBeInstanceOf(BodyTooLargeError);
    // a length that is not a number is not trusted: the body is counted as it streams
    const slow = chunked(10, 20);
    const odd = request(slow.body, { "content-length": "20, 20" });
    await expect(readBodyBytes(odd, 64)).rejects.toBeInstanceOf(BodyTooLargeError);
    expect(slow.pulled).toBeLessThan(10);
  });

  it("stops reading a streamed body once it passes the bound, and cancels the rest", async () => {
    const slow = chunked(10, 20);
    await expect(readBodyBytes(request(slow.body), 64)).rejects.toBeInstanceOf(BodyTooLargeError);
    expect(slow.pulled).toBeLessThan(10);
    expect(slow.cancelled).toBe(true);
  });
});

describe("readJsonBody", () => {
  it("parses UTF-8 JSON", async () => {
    expect(await readJsonBody(request(JSON.stringify({ a: "é" })), 64)).toEqual({ a: "é" });
  });

  it("refuses bytes that are not UTF-8 instead of turning them into U+FFFD", async () => {
    const bytes = new Uint8Array([...utf8('{"a":"'), 0xff, 0xfe, ...utf8('"}')]);
    const error = await readJsonBody(request(bytes), 64).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BodyNotJsonError);
    expect((error as BodyNotJsonError).reason).toBe("utf8");
  });

  it("refuses malformed and empty JSON", async () => {
    for (const text of ['{"a":', ""]) {
      const error = await readJsonBody(request(text), 64).catch((e: unknown) => e);
      expect((error as BodyNotJsonError).reason).toBe("syntax");
    }
  });
});
