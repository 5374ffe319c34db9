"""Paged attention over the unified pool (S-LoRA's Unified Paging, vLLM's PagedAttention).

Every token's K and V for a layer each take one page row of the layer's pool
`[P, W]`, W = Hkv * D, head-major (PROTOCOL.md). Sequences reach their tokens through
page tables, so nothing is contiguous and the pages interleave with adapter weights.

Example (one step, new tokens' K/V written first, then attention over all of them):

    write_kv(pool, k, v, k_pages, v_pages)   # int32 [T] each, contiguous
    o = paged_attention(q, pool, k_table, v_table, cu_q, ctx_lens, head_dim**-0.5)
"""

import torch

from .attention_decode import paged_decode_attention
from .attention_prefill import paged_prefill_attention, prefill_kernel
from .attention_reference import paged_attention_reference, write_kv_reference
from .backend import dot_in_fp32, is_interpreted, require_runnable, use_triton
from .checks import (
    require,
    require_float,
    require_in_range,
    require_int32,
    require_offsets,
    require_same_device,
    should_validate_values,
)
from .kv_write import write_kv_kernel, write_kv_triton


def write_kv(
    pool: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_pages: torch.Tensor,
    v_pages: torch.Tensor,
    *,
    backend: str = "auto",
    validate: bool | None = None,
) -> None:
    """Store new tokens' keys and values in their pages.

        pool      [P, W]          W = Hkv * D
        k, v      [T, Hkv, D]     pool's dtype; each token's [Hkv, D] block contiguous
        k_pages, v_pages  int32 [T]

        pool[k_pages[t]] = k[t].reshape(W);  pool[v_pages[t]] = v[t].reshape(W)

    Page ids must be distinct (the engine's allocator guarantees it); with repeats
    the surviving write is unspecified.
    """
    require_float("pool", pool, 2)
    require(pool.is_contiguous(), "pool must be contiguous")
    num_tokens = k.shape[0]
    for name, t in (("k", k), ("v", v)):
        require_float(name, t, 3)
        require(t.dtype == pool.dtype, f"{name} ({t.dtype}) must have the pool's dtype")
        require(tuple(t.shape) == tuple(k.shape), f"k and v shapes differ: {k.shape} vs {v.shape}")
        require(
            t.shape[1] * t.shape[2] == pool.shape[1],
            f"{name}'s Hkv * D = {t.shape[1] * t.shape[2]} must equal W = {pool.shape[1]}",
        )
        require(
            t.stride(2) == 1 and t.stride(1) == t.shape[2],
            f"{name}[t] must be a contiguous [Hkv, D] block, strides {t.stride()}",
        )
    require_int32("k_pages", k_pages, (num_tokens,))
    require_int32("v_pages", v_pages, (num_tokens,))
    require_same_device(pool=pool, k=k, v=v, k_pages=k_pages, v_pages=v_pages)
    if should_validate_values(validate, pool.device):
        require_in_range("k_pages", k_pages, 0, pool.shape[0])
        require_in_range("v_pages", v_pages, 0, pool.shape[0])
    if not use_triton(backend, pool.device):
        write_kv_reference(pool, k, v, k_pages, v_pages)
        return
    if num_tokens == 0:
        return
    require_runnable(write_kv_kernel, pool.device)
    write_kv_triton(pool, k, v, k_pages, v_pages)


def paged_attention(
    q: torch.Tensor,
    pool: torch.Tensor,
    k_table: torch.Tensor,
    v_table: torch.Tensor,
    cu_q: torch.Tensor,
    ctx_lens: torch.Tensor,
    scale: float,
    *,
    max_q: int | None = None,
    backend: str = "auto",
    validate: bool | None = None,
) -> torch.Tensor:
    """Causal attention of each sequence's new queries over all its tokens' pages.

        q         [T, Hq, D]               model dtype; Hq % Hkv == 0 (GQA), Hkv = W / D
        pool      [P, W]
        k_table, v_table  int32 [B, max_ctx]   page of token i of seq b (this step's written)
        cu_q      int32 [B+1]              seq b's queries are rows cu_q[b] .. cu_q[b+1]-1
        ctx_lens  int32 [B]                cached + new tokens of seq b
        returns o [T, Hq, D] in q's dtype

        n_b = cu_q[b+1] - cu_q[b];  query j of b is at position p = ctx_lens[b] - n_b + j
        o[cu_q[b]+j, h] = softmax_i<=p(scale * q·K_b[i, h//G]) @ V_b[:, h//G]   (fp32)

    A sequence may have no queries (n_b = 0, ctx_lens[b] = 0: padding of a captured
    batch). When max_q == 1 (a decode step) the split-context decode kernel runs, else
    the prefill kernel; `max_q` (max n_b, or for the prefill kernel any bound of it)
    sizes the grid, and is computed with a host sync when not given.
    """
    require_float("q", q, 3)
    require_float("pool", pool, 2)
    require(q.dtype == pool.dtype, f"q ({q.dtype}) and pool ({pool.dtype}) must share a dtype")
    require(q.stride(2) == 1, "q must have unit stride in its last dim")
    require(pool.is_contiguous(), "pool must be contiguous")
    num_tokens, num_q_heads, head_dim = q.shape
    require(
        pool.shape[1] % head_dim == 0,
        f"W = {pool.shape[1]} must be Hkv * D for D = {head_dim}",
    )
    num_kv_heads = pool.shape[1] // head_dim
    require(
        num_q_heads % num_kv_heads == 0,
        f"Hq = {num_q_heads} must be a multiple of Hkv = {num_kv_heads}",
    )
    require(ctx_lens.dim() == 1, f"ctx_lens must be 1-D, got {tuple(ctx_lens.shape)}")
    num_seqs = ctx_lens.shape[0]
    require_int32("ctx_lens", ctx_lens, (num_seqs,))
    require_int32("cu_q", cu_q, (num_seqs + 1,))
    require(k_table.dim() == 2, f"k_table must be [B, max_ctx], got {tuple(k_table.shape)}")
    require_int32("k_table", k_table, (num_seqs, k_table.shape[1]))
    require_int32("v_table", v_table, tuple(k_table.shape))
    require(k_table.stride(1) == 1 and v_table.stride(1) == 1, "page tables must be row-major")
    require(k_table.stride(0) == v_table.stride(0), "k_table and v_table must share a row stride")
    require_same_device(
        q=q, pool=pool, k_table=k_table, v_table=v_table, cu_q=cu_q, ctx_lens=ctx_lens
    )
    if should_validate_values(validate, q.device):
        _check_attention_values(pool, k_table, v_table, cu_q, ctx_lens, num_tokens)
    if not use_triton(backend, q.device):
        return paged_attention_reference(q, pool, k_table, v_table, cu_q, ctx_lens, scale)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if num_tokens == 0:
        return out
    require_runnable(prefill_kernel, q.device)
    dot_f32 = dot_in_fp32(q.dtype, q.device)
    if max_q is None:
        max_q = int((cu_q[1:] - cu_q[:-1]).max())
    if max_q == 1:
        paged_decode_attention(q, pool, k_table, v_table, cu_q, ctx_lens, scale, out, dot_f32)
    else:
        paged_prefill_attention(
            q, pool, k_table, v_table, cu_q, ctx_lens, scale, out, max_q, dot_f32,
            is_interpreted(prefill_kernel),
        )  # fmt: skip
    return out


def _check_attention_values(pool, k_table, v_table, cu_q, ctx_lens, num_tokens) -> None:
    require_offsets("cu_q", cu_q, num_tokens)
    new = (cu_q[1:] - cu_q[:-1]).cpu()
    lens = ctx_lens.cpu()
    require(bool((new >= 0).all()), "cu_q must not decrease")
    require(bool((lens >= new).all()), "ctx_lens must count each sequence's new tokens")
    longest = int(lens.max()) if lens.numel() else 0
    require(
        longest <= k_table.shape[1],
        f"ctx_lens up to {longest} exceed the page tables' width {k_table.shape[1]}",
    )
    used = torch.arange(k_table.shape[1])[None, :] < lens[:, None]
    require_in_range("k_table", k_table.cpu()[used], 0, pool.shape[0])
    require_in_range("v_table", v_table.cpu()[used], 0, pool.shape[0])
