import { describe, expect, it } from "vitest";
import { sseData } from "./sse.ts";

function streamOf(pieces: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(encoder.encode(piece));
      controller.close();
    },
  });
}

async function collect(pieces: string[]): Promise<string[]> {
  const out: string[] = [];
  for await (const data of sseData(streamOf(pieces))) out.push(data);
  return out;
}

describe("sseData", () => {
  it("joins events cut across chunks, with any line end", async () => {
    expect(
      await collect(['data: {"a"', ":1}\r", "\n\r\ndata: x\n", "\ndata:y\r\rdata: [DONE]\n\n"]),
    ).toEqual(['{"a":1}', "x", "y", "[DONE]"]);
  });

  it("skips comments and other fields, joins multi-line data", async () => {
    expect(await collect([": keep-alive\n\nevent: m\nid: 3\ndata: a\ndata: b\n\n"])).toEqual([
      "a\nb",
    ]);
  });

  it("yields a last event without its blank line, and multi-byte text split across chunks", async () => {
    const bytes = new TextEncoder().encode("data: é\n\ndata: end");
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, 7)); // splits the two bytes of "é"
        controller.enqueue(bytes.slice(7));
        controller.close();
      },
    });
    const out: string[] = [];
    for await (const data of sseData(stream)) out.push(data);
    expect(out).toEqual(["é", "end"]);
  });
});
