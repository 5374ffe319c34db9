// Property tests of the TS codec: every valid message round-trips exactly; a stream
// read in chunks of any sizes gives back its frames; every cut or corrupted frame is
// refused by name (or, if a flip still spells a valid message, it re-encodes), never
// accepted silently or crashed on.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BadFrame, ProtocolError } from "./errors.ts";
import { FrameReader } from "./frame.ts";
import { anyMessage } from "./message-arbitraries.ts";
import { decodeMessage, encodeMessage } from "./protocol.ts";

const RUNS = 500; // cases per property

/** Typed arrays as plain byte lists, so NaN payloads and -1n compare exactly. */
function comparable(value: unknown): unknown {
  if (ArrayBuffer.isView(value)) {
    return [
      value.constructor.name,
      [...new Uint8Array(value.buffer, value.byteOffset, value.byteLength)],
    ];
  }
  if (Array.isArray(value)) return value.map(comparable);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, comparable(v)]));
  }
  return value;
}

describe("protocol codec properties", () => {
  it(`round-trips any message exactly (${RUNS} cases)`, () => {
    fc.assert(
      fc.property(anyMessage, fc.integer({ min: 0, max: 0xffffffff }), (message, requestId) => {
        const bytes = encodeMessage(requestId, message);
        const { requestId: id, ...decoded } = decodeMessage(bytes);
        expect(id).toBe(requestId);
        expect(comparable(decoded)).toEqual(comparable(message));
        expect(encodeMessage(id, decoded)).toEqual(bytes);
      }),
      { numRuns: RUNS },
    );
  });

  it(`cuts a stream of frames at any chunk boundaries into the same frames (${RUNS} cases)`, () => {
    fc.assert(
      fc.property(
        fc.array(anyMessage, { minLength: 1, maxLength: 5 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
        (messages, sizes) => {
          const frames = messages.map((m, i) => encodeMessage(i + 1, m));
          const stream = Buffer.concat(frames);
          const reader = new FrameReader();
          const got: Uint8Array[] = [];
          for (let at = 0, i = 0; at < stream.length; i++) {
            const size = sizes[i % sizes.length] as number;
            got.push(...reader.push(stream.subarray(at, at + size)));
            at += size;
          }
          expect(reader.pendingBytes).toBe(0);
          expect(got.map((f) => Buffer.from(f))).toEqual(frames.map((f) => Buffer.from(f)));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it(`refuses any cut frame as BadFrame (${RUNS} cases)`, () => {
    fc.assert(
      fc.property(anyMessage, fc.double({ min: 0, max: 1, maxExcluded: true }), (message, at) => {
        const bytes = encodeMessage(1, message);
        const cut = Math.floor(at * bytes.length);
        expect(() => decodeMessage(bytes.subarray(0, cut))).toThrow(BadFrame);
      }),
      { numRuns: RUNS },
    );
  });

  it(`refuses a flipped byte by name or decodes a valid message (${RUNS} cases)`, () => {
    fc.assert(
      fc.property(
        anyMessage,
        fc.double({ min: 0, max: 1, maxExcluded: true }),
        fc.integer({ min: 1, max: 255 }),
        (message, at, mask) => {
          const bytes = encodeMessage(1, message).slice();
          const i = Math.floor(at * bytes.length);
          bytes[i] = (bytes[i] as number) ^ mask;
          let decoded: ReturnType<typeof decodeMessage>;
          try {
            decoded = decodeMessage(bytes);
          } catch (error) {
            expect(error).toBeInstanceOf(ProtocolError);
            return;
          }
          const { requestId, ...again } = decoded;
          expect(decodeMessage(encodeMessage(requestId, again)).type).toBe(decoded.type);
        },
      ),
      { numRuns: RUNS },
    );
  });
});
