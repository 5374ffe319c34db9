import { adapterError } from "./adapter-error.ts";

/** Bytes per element of each safetensors dtype. */
const dtypeBytes: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

export type TensorInfo = {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range in the data section (after the header), [begin, end). */
  begin: number;
  end: number;
};

/** A header larger than this is refused before it is decoded. */
export const maxHeaderBytes = 8 * 1024 * 1024;

/**
 * Parses and checks a safetensors file's header against the file's real size:
 * `u64 little-endian header length | JSON header | data`, where every tensor's
 * `data_offsets` are relative to the data section, must hold exactly
 * prod(shape) * dtype size bytes, and together must tile the data section with
 * no gap and no overlap (as the format requires).
 *
 * @example parseSafetensors(bytes) // [{ name: "…lora_A.weight", dtype: "F32", shape: [8, 64], begin: 0, end: 2048 }]
 */
export function parseSafetensors(bytes: Uint8Array): TensorInfo[] {
  const headerEnd = safetensorsHeaderEnd(bytes, bytes.byteLength);
  return parseSafetensorsHeader(bytes.subarray(0, headerEnd), bytes.byteLength);
}

/**
 * Where the header of a safetensors file of `fileSize` bytes ends, from its
 * first 8 bytes: 8 + the declared header length, checked against the limit and
 * the file's size. Lets a large file in R2 be checked from two range reads.
 */
export function safetensorsHeaderEnd(lengthPrefix: Uint8Array, fileSize: number): number {
  const file = "adapter_model.safetensors";
  if (fileSize < 8 || lengthPrefix.byteLength < 8) {
    throw adapterError("safetensors_truncated", `${file} is shorter than its 8-byte header length`);
  }
  const headerLength = new DataView(lengthPrefix.buffer, lengthPrefix.byteOffset, 8).getBigUint64(
    0,
    true,
  );
  if (headerLength > BigInt(maxHeaderBytes)) {
    throw adapterError(
      "safetensors_header_too_large",
      `${file} declares a ${headerLength}-byte header (at most ${maxHeaderBytes})`,
    );
  }
  const dataStart = 8 + Number(headerLength);
  if (dataStart > fileSize) {
    throw adapterError(
      "safetensors_truncated",
      `${file} declares a ${headerLength}-byte header but has ${fileSize - 8} bytes after the length`,
    );
  }
  return dataStart;
}

/** Parses the header (`head` = the file's first safetensorsHeaderEnd bytes) and checks it against the file's size. */
export function parseSafetensorsHeader(head: Uint8Array, fileSize: number): TensorInfo[] {
  const file = "adapter_model.safetensors";
  const dataStart = safetensorsHeaderEnd(head, fileSize);
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(
        head.subarray(8, dataStart),
      ),
    );
  } catch {
    throw adapterError("safetensors_bad_header", `${file}'s header is not UTF-8 JSON`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw adapterError("safetensors_bad_header", `${file}'s header is not a JSON object`);
  }
  const tensors = Object.entries(header)
    .filter(([name]) => name !== "__metadata__")
    .map(([name, entry]) => tensorInfo(name, entry));
  checkTiling(tensors, fileSize - dataStart);
  return tensors;
}

function tensorInfo(name: string, entry: unknown): TensorInfo {
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  const bad = (why: string) =>
    adapterError("safetensors_bad_tensor", `Tensor ${name} in adapter_model.safetensors: ${why}`);
  if (typeof e !== "object" || e === null) throw bad("entry is not an object");
  if (typeof e.dtype !== "string" || !(e.dtype in dtypeBytes))
    throw bad(`unknown dtype ${JSON.stringify(e.dtype)}`);
  const isDim = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
  if (!Array.isArray(e.shape) || !e.shape.every(isDim))
    throw bad("shape is not a list of non-negative integers");
  const offsets = e.data_offsets;
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every(isDim) ||
    (offsets[0] as number) > (offsets[1] as number)
  ) {
    throw bad("data_offsets is not [begin, end] with begin <= end");
  }
  const [begin, end] = offsets as [number, number];
  const expected = (e.shape as number[]).reduce((p, d) => p * d, 1) * (dtypeBytes[e.dtype] ?? 0);
  if (end - begin !== expected) {
    throw adapterError(
      "safetensors_offsets_mismatch",
      `Tensor ${name}: data_offsets span ${end - begin} bytes but ${e.dtype}${JSON.stringify(e.shape)} needs ${expected}`,
    );
  }
  return { name, dtype: e.dtype, shape: e.shape as number[], begin, end };
}

function checkTiling(tensors: TensorInfo[], dataBytes: number): void {
  let cursor = 0;
  for (const t of [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end)) {
    if (t.begin !== cursor) {
      throw adapterError(
        "safetensors_offsets_mismatch",
        `Tensor ${t.name} starts at byte ${t.begin} of the data section, expected ${cursor} (overlap or gap)`,
      );
    }
    cursor = t.end;
  }
  if (cursor !== dataBytes) {
    throw adapterError(
      cursor > dataBytes ? "safetensors_truncated" : "safetensors_offsets_mismatch",
      `The tensors cover ${cursor} bytes but the data section has ${dataBytes}`,
    );
  }
}
