// The prefix cache's block hash (the engine's BlockHasher): SHA-256, so that no one can
// make two prefixes collide and read another's KV. The engine does no I/O and imports no
// node: module, so the server gives it this.
import { createHash } from "node:crypto";
import type { BlockHasher } from "../engine/index.ts";

/**
 * SHA-256 over (the base model, the parent block's hash, the block's token ids), each part
 * length-prefixed and the ids as u32 little-endian, so distinct inputs never encode alike.
 * @example const hashBlock = sha256BlockHasher("/models/llama-2-7b"); hashBlock(root, [1, 2])
 */
export function sha256BlockHasher(baseModel: string): BlockHasher {
  const model = Buffer.from(baseModel, "utf8");
  return (parent, tokenIds) => {
    const text = Buffer.from(parent, "utf8");
    const ids = Buffer.alloc(4 * tokenIds.length);
    tokenIds.forEach((id, i) => {
      ids.writeUInt32LE(id, 4 * i);
    });
    const lengths = Buffer.alloc(12);
    lengths.writeUInt32LE(model.length, 0);
    lengths.writeUInt32LE(text.length, 4);
    lengths.writeUInt32LE(tokenIds.length, 8);
    return createHash("sha256")
      .update(lengths)
      .update(model)
      .update(text)
      .update(ids)
      .digest("hex");
  };
}
