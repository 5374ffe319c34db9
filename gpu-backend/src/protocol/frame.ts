// PROTOCOL.md's frame layer: the 16-byte header, the meta JSON and the 8-byte aligned
// typed arrays of a payload. It knows nothing of message types; schema.ts does.

import { BadFrame, BadMessage } from "./errors.ts";
import { PROTOCOL_VERSION } from "./messages.ts";

const MAGIC = 0x3150464c; // the bytes "LFP1" read as a little-endian u32
const HEADER_BYTES = 16;
const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;

export type Dtype = "u8" | "i32" | "u32" | "f32" | "i64";
export type WireArray = Uint8Array | Int32Array | Uint32Array | Float32Array | BigInt64Array;

const ARRAY_CLASS = {
  u8: Uint8Array,
  i32: Int32Array,
  u32: Uint32Array,
  f32: Float32Array,
  i64: BigInt64Array,
} as const;

function isDtype(value: unknown): value is Dtype {
  return typeof value === "string" && Object.hasOwn(ARRAY_CLASS, value);
}

export function dtypeOf(array: WireArray): Dtype {
  if (array instanceof Uint8Array) return "u8";
  if (array instanceof Int32Array) return "i32";
  if (array instanceof Uint32Array) return "u32";
  if (array instanceof Float32Array) return "f32";
  return "i64";
}

// Typed arrays use the host's byte order; the wire is little-endian. Every platform
// Node runs lorafleet on is, but a silent byte swap would be a nightmare to find.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("lorafleet's frame codec needs a little-endian host");
}

export interface FrameHeader {
  type: number;
  requestId: number;
  payloadLength: number;
}

export interface NamedArray {
  name: string;
  dtype: Dtype;
  data: WireArray;
}

export interface RawFrame extends FrameHeader {
  /** the meta object without its "arrays" list */
  meta: Record<string, unknown>;
  arrays: NamedArray[];
}

const pad8 = (n: number): number => (n + 7) & ~7;

/** Checks the first 16 bytes; throws BadFrame when the stream cannot be trusted. */
function readHeader(bytes: Uint8Array): FrameHeader {
  if (bytes.byteLength < HEADER_BYTES) {
    throw new BadFrame(`truncated frame: ${bytes.byteLength} bytes, the header alone is 16`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const magic = view.getUint32(0, true);
  if (magic !== MAGIC) throw new BadFrame(`bad magic 0x${magic.toString(16).padStart(8, "0")}`);
  const version = view.getUint16(4, true);
  if (version !== PROTOCOL_VERSION) {
    throw new BadFrame(`unsupported protocol version ${version}, this side speaks 1`);
  }
  const payloadLength = view.getUint32(12, true);
  if (payloadLength > MAX_PAYLOAD_BYTES) {
    throw new BadFrame(`payload length ${payloadLength} over the limit of ${MAX_PAYLOAD_BYTES}`);
  }
  return { type: view.getUint16(6, true), requestId: view.getUint32(8, true), payloadLength };
}

/**
 * One frame's bytes. `meta` keys are written in their insertion order and "arrays" last,
 * so both languages produce the same bytes for the same message.
 */
export function encodeFrame(
  type: number,
  requestId: number,
  meta: Record<string, unknown>,
  arrays: NamedArray[],
): Uint8Array {
  const listed = arrays.map((a) => [a.name, a.dtype, a.data.length]);
  const metaBytes = new TextEncoder().encode(JSON.stringify({ ...meta, arrays: listed }));
  let payloadLength = pad8(4 + metaBytes.byteLength);
  for (const a of arrays) payloadLength += pad8(a.data.byteLength);
  if (payloadLength > MAX_PAYLOAD_BYTES) {
    throw new BadMessage(`payload length ${payloadLength} over the limit of ${MAX_PAYLOAD_BYTES}`);
  }
  const frame = new Uint8Array(HEADER_BYTES + payloadLength);
  const view = new DataView(frame.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint16(4, PROTOCOL_VERSION, true);
  view.setUint16(6, type, true);
  view.setUint32(8, requestId, true);
  view.setUint32(12, payloadLength, true);
  view.setUint32(HEADER_BYTES, metaBytes.byteLength, true);
  frame.set(metaBytes, HEADER_BYTES + 4);
  let offset = HEADER_BYTES + pad8(4 + metaBytes.byteLength);
  for (const a of arrays) {
    frame.set(new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength), offset);
    offset += pad8(a.data.byteLength);
  }
  return frame;
}

/**
 * Splits one complete frame into header, meta and arrays. Throws BadFrame when the bytes
 * are not one whole frame, BadMessage when the payload's layout is inconsistent.
 */
export function decodeFrame(bytes: Uint8Array): RawFrame {
  const header = readHeader(bytes);
  const total = HEADER_BYTES + header.payloadLength;
  if (bytes.byteLength < total) {
    throw new BadFrame(`truncated frame: ${bytes.byteLength} of ${total} bytes`);
  }
  if (bytes.byteLength > total) {
    throw new BadFrame(`${bytes.byteLength - total} bytes after the frame's end`);
  }
  const payload = bytes.subarray(HEADER_BYTES);
  if (payload.byteLength < 4) throw new BadMessage("payload shorter than its meta_len field");
  const metaLength = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0, true);
  if (4 + metaLength > payload.byteLength) {
    throw new BadMessage(
      `meta_len ${metaLength} runs past the payload's ${payload.byteLength} bytes`,
    );
  }
  const meta = parseMeta(payload.subarray(4, 4 + metaLength));
  const { arrays: listed, ...fields } = meta;
  const arrays: NamedArray[] = [];
  let offset = pad8(4 + metaLength);
  for (const [name, dtype, length] of checkArrayList(listed)) {
    const Class = ARRAY_CLASS[dtype];
    const byteLength = length * Class.BYTES_PER_ELEMENT;
    if (offset + byteLength > payload.byteLength) {
      throw new BadMessage(`array ${name} (${length} × ${dtype}) runs past the payload's end`);
    }
    // A copy: the caller owns its arrays, and the source may not be 8-byte aligned.
    // (Not `payload.slice(…).buffer`: on a Node Buffer, slice is a view of the pool.)
    const data = new Class(length);
    new Uint8Array(data.buffer).set(payload.subarray(offset, offset + byteLength));
    arrays.push({ name, dtype, data });
    offset += pad8(byteLength);
  }
  if (offset !== payload.byteLength) {
    throw new BadMessage(
      `payload is ${payload.byteLength} bytes but its meta and arrays take ${offset}`,
    );
  }
  return { ...header, meta: fields, arrays };
}

function parseMeta(bytes: Uint8Array): Record<string, unknown> {
  let meta: unknown;
  try {
    meta = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw new BadMessage(`meta is not UTF-8 JSON: ${(error as Error).message}`);
  }
  if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
    throw new BadMessage("meta is not a JSON object");
  }
  return meta as Record<string, unknown>;
}

function checkArrayList(listed: unknown): [string, Dtype, number][] {
  if (!Array.isArray(listed)) throw new BadMessage('meta field "arrays" is missing or not a list');
  return listed.map((entry, i) => {
    if (
      !Array.isArray(entry) ||
      entry.length !== 3 ||
      typeof entry[0] !== "string" ||
      !isDtype(entry[1]) ||
      !Number.isSafeInteger(entry[2]) ||
      entry[2] < 0
    ) {
      throw new BadMessage(`arrays[${i}] is not [name, dtype (u8|i32|u32|f32|i64), length]`);
    }
    return [entry[0], entry[1], entry[2]];
  });
}

/**
 * Cuts a byte stream into whole frames: chunks may end anywhere, even inside a header.
 * Throws BadFrame as soon as a header is bad (the stream cannot be resynchronised).
 */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private header: FrameHeader | undefined;

  push(chunk: Uint8Array): Uint8Array[] {
    this.chunks.push(chunk);
    this.buffered += chunk.byteLength;
    const frames: Uint8Array[] = [];
    for (;;) {
      if (this.header === undefined) {
        if (this.buffered < HEADER_BYTES) break;
        this.header = readHeader(this.take(HEADER_BYTES, false));
      }
      const total = HEADER_BYTES + this.header.payloadLength;
      if (this.buffered < total) break;
      frames.push(this.take(total, true));
      this.header = undefined;
    }
    return frames;
  }

  /** Bytes of a frame begun but not finished: non-zero at EOF means a truncated frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  private take(n: number, consume: boolean): Uint8Array {
    const joined = Buffer.concat(this.chunks);
    if (!consume) {
      this.chunks = [joined];
      return joined.subarray(0, n);
    }
    const rest = joined.subarray(n);
    this.chunks = rest.byteLength > 0 ? [rest] : [];
    this.buffered = rest.byteLength;
    return joined.subarray(0, n);
  }
}
