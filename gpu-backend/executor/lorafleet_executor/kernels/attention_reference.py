"""Plain torch paged attention and KV writes: the CPU path and the kernels' oracle.

Gathers each sequence's K/V pages into dense fp32 tensors and runs causal softmax
attention, one sequence at a time. Arguments are as in `attention.py`, already checked.
"""

import torch


def write_kv_reference(pool, k, v, k_pages, v_pages) -> None:
    num_tokens = k.shape[0]
    pool.index_copy_(0, k_pages.long(), k.reshape(num_tokens, -1))
    pool.index_copy_(0, v_pages.long(), v.reshape(num_tokens, -1))


def paged_attention_reference(q, pool, k_table, v_table, cu_q, ctx_lens, scale) -> torch.Tensor:
    _, num_q_heads, head_dim = q.shape
    num_kv_heads = pool.shape[1] // head_dim
    group = num_q_heads // num_kv_heads
    out = torch.empty_like(q)
    starts, lens = cu_q.tolist(), ctx_lens.tolist()
    for b, ctx in enumerate(lens):
        first, last = starts[b], starts[b + 1]
        n = last - first
        k = pool[k_table[b, :ctx].long()].view(ctx, num_kv_heads, head_dim).float()
        v = pool[v_table[b, :ctx].long()].view(ctx, num_kv_heads, head_dim).float()
        k = k.repeat_interleave(group, dim=1)  # [ctx, Hq, D]: query head h reads kv head h // G
        v = v.repeat_interleave(group, dim=1)
        scores = torch.einsum("nhd,chd->hnc", q[first:last].float(), k) * scale
        positions = torch.arange(ctx - n, ctx, device=q.device)
        causal = torch.arange(ctx, device=q.device)[None, :] <= positions[:, None]  # [n, ctx]
        probs = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        out[first:last] = torch.einsum("hnc,chd->nhd", probs, v).to(q.dtype)
    return out
