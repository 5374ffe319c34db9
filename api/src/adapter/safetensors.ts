// adapter_model.safetensors' header against the shared rules (rules.ts): `u64 LE header
// length | JSON header | data`, where every tensor's data_offsets (relative to the data
// section) hold exactly prod(shape) × dtype size bytes and together tile the data section
// with no gap and no overlap. Checked against the file's real size, so a large file can
// be checked from two range reads (safetensorsHeaderEnd, then parseSafetensorsHeader).
import {
  AdapterRuleError,
  isObject,
  MAX_HEADER_BYTES,
  MAX_JSON_DEPTH,
  nestedTooDeep,
  printable,
  utf8,
} from "./rules.ts";

const FILE = "adapter_model.safetensors";

/** Bytes per element of each safetensors dtype. */
export const DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  /** byte range in the data section (after the header), [begin, end) */
  begin: number;
  end: number;
}

/** Where the header ends (8 + its declared length), from the file's first 8 bytes and its size. */
export function safetensorsHeaderEnd(lengthPrefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || lengthPrefix.byteLength < 8) {
    throw new AdapterRuleError(
      "safetensors_truncated",
      `${FILE} is shorter than its 8-byte header length`,
    );
  }
  const view = new DataView(lengthPrefix.buffer, lengthPrefix.byteOffset, 8);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw new AdapterRuleError(
      "safetensors_header_too_large",
      `${FILE} declares a ${headerLength}-byte header (at most ${MAX_HEADER_BYTES})`,
    );
  }
  if (8 + Number(headerLength) > fileSize) {
    throw new AdapterRuleError(
      "safetensors_truncated",
      `${FILE} declares a ${headerLength}-byte header but has ${fileSize - 8} bytes after the length`,
    );
  }
  return 8 + Number(headerLength);
}

/**
 * The tensors of a safetensors file of `fileSize` bytes whose first bytes are `head` (at
 * least safetensorsHeaderEnd of them), sorted by name (by code point).
 *
 * @example parseSafetensorsHeader(bytes, bytes.byteLength) // [{ name: "…lora_A.weight", dtype: "F32", shape: [8, 64], begin: 0, end: 2048 }]
 */
export function parseSafetensorsHeader(head: Uint8Array, fileSize: number): TensorEntry[] {
  const dataStart = safetensorsHeaderEnd(head, fileSize);
  const bad = (why: string) =>
    new AdapterRuleError("safetensors_bad_header", `${FILE}: the header ${why}`);
  const text = utf8(head.subarray(8, dataStart));
  if (text === null) throw bad("is not UTF-8 JSON");
  if (nestedTooDeep(text)) throw bad(`is nested deeper than ${MAX_JSON_DEPTH} levels`);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    throw bad("is not UTF-8 JSON");
  }
  if (!isObject(header)) throw bad("is not a JSON object");
  const tensors = Object.keys(header)
    .filter((name) => name !== "__metadata__")
    .sort(byCodePoint)
    .map((name) => tensorEntry(name, header[name]));
  checkTiling(tensors, fileSize - dataStart);
  return tensors;
}

/** Code point order (as Python sorts strings), not UTF-16 code unit order. */
export function byCodePoint(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = (x[i]?.codePointAt(0) ?? 0) - (y[i]?.codePointAt(0) ?? 0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

function tensorEntry(name: string, entry: unknown): TensorEntry {
  const bad = (why: string) =>
    new AdapterRuleError("safetensors_bad_tensor", `${FILE}: tensor ${printable(name)}: ${why}`);
  if (!isObject(entry)) throw bad("the entry is not an object");
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_BYTES, dtype)) {
    throw bad("unknown dtype");
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw bad("shape is not a list of whole numbers");
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every(isCount) ||
    (offsets[0] as number) > (offsets[1] as number)
  ) {
    throw bad("data_offsets is not [begin, end] with begin <= end");
  }
  const [begin, end] = offsets as [number, number];
  const bytes = (shape as number[]).reduce((p, d) => p * d, 1) * (DTYPE_BYTES[dtype] as number);
  if (end - begin !== bytes) {
    throw new AdapterRuleError(
      "safetensors_offsets_mismatch",
      `${FILE}: tensor ${printable(name)}: data_offsets do not span its dtype and shape`,
    );
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

function checkTiling(tensors: TensorEntry[], dataBytes: number): void {
  let cursor = 0;
  const byOffset = [...tensors].sort(
    (a, b) => a.begin - b.begin || a.end - b.end || byCodePoint(a.name, b.name),
  );
  for (const t of byOffset) {
    if (t.begin !== cursor) {
      throw new AdapterRuleError(
        "safetensors_offsets_mismatch",
        `${FILE}: the tensors' data_offsets leave a gap or overlap`,
      );
    }
    cursor = t.end;
  }
  if (cursor !== dataBytes) {
    throw new AdapterRuleError(
      cursor > dataBytes ? "safetensors_truncated" : "safetensors_offsets_mismatch",
      `${FILE}: the tensors cover ${cursor} bytes but the data section has ${dataBytes}`,
    );
  }
}
