// The TS codec against the byte fixtures the Python codec wrote
// (executor/tests/frames, made by make_frames.py): same bytes, same refusals.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BadFrame, BadMessage } from "./errors.ts";
import { FrameReader } from "./frame.ts";
import { decodeMessage, encodeMessage } from "./protocol.ts";

const FRAMES = join(import.meta.dirname, "../../executor/tests/frames");
const read = (folder: string) =>
  readdirSync(join(FRAMES, folder))
    .filter((f) => f.endsWith(".bin"))
    .sort()
    .map((f) => [f.slice(0, -4), new Uint8Array(readFileSync(join(FRAMES, folder, f)))] as const);
const good = read("good");
const bad = read("bad");
const fixture = (name: string) => good.find(([n]) => n === name)?.[1] as Uint8Array;

describe("shared frame fixtures", () => {
  it("are all there", () => {
    expect(good.length).toBe(18);
    expect(bad.length).toBe(27);
  });

  it.each(good)("%s decodes and re-encodes to the same bytes", (_, bytes) => {
    const decoded = decodeMessage(bytes);
    expect(decoded.requestId).toBe(5);
    const { requestId, ...message } = decoded;
    expect(encodeMessage(requestId, message)).toEqual(bytes);
  });

  it.each(bad)("%s is refused by name", (name, bytes) => {
    const want = name.startsWith("bad_frame--") ? BadFrame : BadMessage;
    let caught: unknown;
    try {
      decodeMessage(bytes);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(want);
    expect((caught as Error).constructor).toBe(want);
  });

  it("decodes frames that are views into a larger Buffer", () => {
    // A FrameReader hands out subarrays of one joined Buffer; a bug once read arrays
    // from the start of that Buffer's memory instead of the frame's.
    const joined = Buffer.concat([Buffer.alloc(3), fixture("load_adapter")]);
    const decoded = decodeMessage(joined.subarray(3));
    if (decoded.type !== "load_adapter") throw new Error(decoded.type);
    expect([...decoded.body.pages]).toEqual([9, 4, 2 ** 31 - 1, 0, 5]);
  });

  it("step carries its values through", () => {
    const decoded = decodeMessage(fixture("step"));
    if (decoded.type !== "step") throw new Error(decoded.type);
    const plan = decoded.body;
    expect(plan.stepId).toBe(41);
    expect([...plan.flags]).toEqual([1, 3, 5]);
    expect(plan.seed[1]).toBe(2n ** 62n + 3n);
    expect(plan.kvPages.length).toBe(2 * plan.tokenIds.length);
    expect(plan.prefixTokenIds.length).toBe(6);
    expect(plan.prefixKvPages.length).toBe(12);
    expect([...plan.grammarIds]).toEqual([-1, 0, 2 ** 31 - 1]);
  });

  it("the grammar messages carry their source and codes", () => {
    const compile = decodeMessage(fixture("compile_grammar"));
    if (compile.type !== "compile_grammar") throw new Error(compile.type);
    expect(compile.body).toEqual({
      grammarId: 0xffffffff,
      kind: "json_schema",
      source: '{"type":"object","properties":{"ü":{"enum":["a\\"b"]}}}',
    });
    const error = decodeMessage(fixture("error_grammar"));
    if (error.type !== "error") throw new Error(error.type);
    expect(error.body.code).toBe("grammar_invalid");
    const result = decodeMessage(fixture("step_result"));
    if (result.type !== "step_result") throw new Error(result.type);
    expect([...result.body.grammarErrors]).toEqual([0, 1]);
  });

  it("step_result keeps NaN and tiny floats; ready keeps large ids", () => {
    const result = decodeMessage(fixture("step_result"));
    if (result.type !== "step_result") throw new Error(result.type);
    expect(Number.isNaN(result.body.logprobs[0])).toBe(true);
    expect(result.body.sampleMs).toBe(1e-7);
    const ready = decodeMessage(fixture("ready"));
    if (ready.type !== "ready") throw new Error(ready.type);
    expect(ready.body.eosTokenIds).toEqual([2, 0xffffffff]);
    expect(ready.body.modules.down).toEqual([688, 256]);
    expect(ready.body.quantization).toBe("fp8");
    const init = decodeMessage(fixture("init"));
    if (init.type !== "init") throw new Error(init.type);
    expect(init.body.quantization).toBe("fp8");
  });

  it("a stream of every good frame cut at every byte yields the same frames", () => {
    const stream = Buffer.concat(good.map(([, b]) => b));
    for (const size of [1, 3, 16, 17, 1000]) {
      const reader = new FrameReader();
      const frames: Uint8Array[] = [];
      for (let at = 0; at < stream.length; at += size) {
        frames.push(...reader.push(stream.subarray(at, at + size)));
      }
      expect(frames.map((f) => Buffer.from(f))).toEqual(good.map(([, b]) => Buffer.from(b)));
      expect(reader.pendingBytes).toBe(0);
    }
  });

  it("the stream reader refuses a bad header as soon as it has 16 bytes", () => {
    const reader = new FrameReader();
    const magic = bad.find(([n]) => n === "bad_frame--magic")?.[1] as Uint8Array;
    expect(reader.push(magic.subarray(0, 15))).toEqual([]);
    expect(() => reader.push(magic.subarray(15, 16))).toThrow(BadFrame);
  });
});
