// Cross-language round trip: frames the TS codec wrote are decoded and re-encoded by
// the Python codec (and the other way round); both must give back the same bytes.

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FrameReader } from "../protocol/frame.ts";
import { anyMessage } from "../protocol/message-arbitraries.ts";
import { decodeMessage, encodeMessage } from "../protocol/protocol.ts";
import { TEST_PYTHON } from "./test-fixtures.ts";

const SCRIPT = join(import.meta.dirname, "../../executor/tests/frames/cross_language.py");
const CASES = 400;

function python(args: string[], input?: Uint8Array): Buffer {
  const run = spawnSync(TEST_PYTHON, [SCRIPT, ...args], {
    input,
    maxBuffer: 256 << 20,
    timeout: 30_000,
  });
  if (run.status !== 0) throw new Error(`python ${args[0]} failed: ${run.stderr.toString()}`);
  return run.stdout;
}

const split = (bytes: Uint8Array): Uint8Array[] => {
  const reader = new FrameReader();
  const frames = reader.push(bytes);
  expect(reader.pendingBytes).toBe(0);
  return frames;
};

describe("TS <-> Python codecs", () => {
  it(`Python re-encodes ${CASES} random TS frames to the same bytes`, () => {
    const messages = fc.sample(anyMessage, { numRuns: CASES, seed: 20260601 });
    const sent = messages.map((m, i) => encodeMessage(i, m));
    const back = split(python(["echo"], Buffer.concat(sent)));
    expect(back.length).toBe(sent.length);
    back.forEach((frame, i) => {
      expect(Buffer.from(frame).equals(Buffer.from(sent[i] as Uint8Array))).toBe(true);
    });
  });

  it(`TS re-encodes ${CASES} random Python frames to the same bytes`, () => {
    const frames = split(python(["generate", String(CASES), "7"]));
    expect(frames.length).toBe(CASES);
    const types = new Set<string>();
    for (const frame of frames) {
      const { requestId, ...message } = decodeMessage(frame);
      types.add(message.type);
      expect(Buffer.from(encodeMessage(requestId, message)).equals(Buffer.from(frame))).toBe(true);
    }
    expect(types.size).toBe(16);
  });
});
