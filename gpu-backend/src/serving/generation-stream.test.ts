import { describe, expect, it } from "vitest";
import type { RequestOutput } from "../engine/index.ts";
import { byteLevelTokenizer, IM_END } from "../tokenizer/testing/byte-level-tokenizer.ts";
import { GenerationStream } from "./generation-stream.ts";

const tokenizer = byteLevelTokenizer();
const eos = tokenizer.encode(IM_END, false)[0] ?? -1;

function output(ids: number[], fields: Partial<RequestOutput> = {}): RequestOutput {
  return {
    id: "r",
    tenant: "t",
    newTokenIds: ids,
    logprobs: null,
    finishReason: null,
    stopTokenId: null,
    error: null,
    numPromptTokens: 3,
    numCachedTokens: 0,
    numOutputTokens: 0,
    ...fields,
  };
}

async function drain(stream: GenerationStream) {
  const deltas = [];
  for await (const delta of stream) deltas.push(delta);
  return deltas;
}

const text = (stops: string[]) => ({ stops, keepSpecialTokens: false });

describe("GenerationStream", () => {
  it("delivers an emoji split over two outputs whole, and leaves the EOS out", async () => {
    const stream = new GenerationStream("r", tokenizer, [], text([]), () => {});
    const ids = tokenizer.encode("hi 😀", false);
    stream.push(output(ids.slice(0, 4)));
    stream.push(output([...ids.slice(4), eos], { finishReason: "stop", stopTokenId: eos }));
    const deltas = await drain(stream);
    expect(deltas.map((d) => d.text)).toEqual(["hi ", "😀"]);
    expect(deltas.at(-1)?.finishReason).toBe("stop");
    expect(deltas.flatMap((d) => d.tokens.map((t) => t.id))).toEqual(ids);
  });

  it("cuts at a stop string spread over outputs and asks the owner to abort", async () => {
    const stream = new GenerationStream("r", tokenizer, [], text(["END"]), () => {});
    expect(stream.push(output(tokenizer.encode("abcE", false)))).toBe(false);
    expect(stream.push(output(tokenizer.encode("NDxyz", false)))).toBe(true);
    expect(stream.finished).toBe(true);
    const deltas = await drain(stream);
    expect(deltas.map((d) => d.text).join("")).toBe("abc");
    expect(deltas.at(-1)?.finishReason).toBe("stop");
  });

  it("releases held text when generation ends by length", async () => {
    const stream = new GenerationStream("r", tokenizer, [], text(["END"]), () => {});
    stream.push(output(tokenizer.encode("abEN", false), { finishReason: "length" }));
    const deltas = await drain(stream);
    expect(deltas.map((d) => d.text).join("")).toBe("abEN");
    expect(deltas.at(-1)?.finishReason).toBe("length");
  });

  it("rejects the reader when the request fails, after what came before", async () => {
    const stream = new GenerationStream("r", tokenizer, [], text([]), () => {});
    stream.push(output(tokenizer.encode("ok", false)));
    stream.fail(new Error("executor said no"));
    const iterator = stream[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.text).toBe("ok");
    await expect(iterator.next()).rejects.toThrow("executor said no");
  });

  it("tells its owner when the reader goes away early, and only then", async () => {
    let cancelled = 0;
    const stream = new GenerationStream("r", tokenizer, [], text([]), () => cancelled++);
    stream.push(output(tokenizer.encode("a", false)));
    for await (const _ of stream) break;
    expect(cancelled).toBe(1);
    const finished = new GenerationStream("s", tokenizer, [], text([]), () => cancelled++);
    finished.push(output([], { finishReason: "length" }));
    await drain(finished);
    await finished[Symbol.asyncIterator]().return?.();
    expect(cancelled).toBe(1);
  });

  it("says when it has started: first output, failure before any, or the reader leaving", async () => {
    const served = new GenerationStream("r", tokenizer, [], text([]), () => {});
    let started = false;
    void served.started().then(() => {
      started = true;
    });
    await Promise.resolve();
    expect(started).toBe(false);
    served.push(output(tokenizer.encode("a", false)));
    await served.started();

    const refused = new GenerationStream("r", tokenizer, [], text([]), () => {});
    refused.fail(new Error("adapter refused"));
    await expect(refused.started()).rejects.toThrow("adapter refused");

    const left = new GenerationStream("r", tokenizer, [], text([]), () => {});
    await left[Symbol.asyncIterator]().return?.();
    await left.started();
  });
});
