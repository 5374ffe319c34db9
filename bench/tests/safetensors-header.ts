/** The JSON header of a .safetensors file (u64 little-endian length, then JSON): dtypes and shapes. */
import { closeSync, openSync, readSync } from "node:fs";

export type TensorInfo = { dtype: string; shape: number[]; data_offsets: [number, number] };

export function safetensorsHeader(path: string): Record<string, TensorInfo> {
  const fd = openSync(path, "r");
  try {
    const size = Buffer.alloc(8);
    readSync(fd, size, 0, 8, 0);
    const length = Number(size.readBigUInt64LE());
    const json = Buffer.alloc(length);
    readSync(fd, json, 0, length, 8);
    const { __metadata__: _, ...tensors } = JSON.parse(json.toString("utf8"));
    return tensors;
  } finally {
    closeSync(fd);
  }
}
