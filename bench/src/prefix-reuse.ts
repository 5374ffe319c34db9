/**
 * The ideal prefix reuse of a trace: the prompt tokens an unbounded cache of B-token blocks
 * keyed like the engine's (the adapter, then the chain of blocks) would serve. A request
 * finds the leading full blocks of its prompt that an earlier request's prompt had at the
 * same place, at most all its tokens but the last (computed again for its logits).
 *
 *   idealCachedTokens(trace.requests, 16) // Σ over requests, in arrival order
 */
import type { TraceRequest } from "./workload.ts";

export function idealCachedTokens(requests: readonly TraceRequest[], blockSize: number): number {
  // One trie of blocks per adapter: node -> (a block's tokens -> the node after it).
  const children = new Map<number, Map<string, number>>();
  const roots = new Map<string, number>();
  let nodes = 0;
  let total = 0;
  const ordered = [...requests].sort((a, b) => a.arrivalS - b.arrivalS || a.id - b.id);
  for (const request of ordered) {
    const adapter = request.adapter ?? "";
    let node = roots.get(adapter) ?? nodes++;
    roots.set(adapter, node);
    let matched = 0;
    for (let i = 0; (i + 1) * blockSize <= request.prompt.length; i++) {
      const block = request.prompt.slice(i * blockSize, (i + 1) * blockSize).join(",");
      const next = children.get(node) ?? new Map<string, number>();
      children.set(node, next);
      const child = next.get(block);
      // Once a block is new, so is every block after it (a new node has no children).
      if (child === undefined) next.set(block, nodes);
      else matched++;
      node = child ?? nodes++;
    }
    total += Math.min(matched * blockSize, request.prompt.length - 1);
  }
  return total;
}
