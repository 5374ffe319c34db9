"""Triton paged prefill attention: causal flash attention over K/V pages.

A program takes BLOCK_M queries of one sequence and one query head (chunked prefill:
queries sit at positions ctx - n .. ctx - 1, after the cached ones) and streams that
sequence's K/V page rows up to its last query's position, with an online softmax.
"""

import triton
import triton.language as tl

from .attention_decode import LOG2E
from .triton_common import dot_acc, next_pow2

BLOCK_M = 64
BLOCK_N = 64


@triton.jit
def attend_block(
    q,
    positions,
    n0,
    kv_end,
    m_i,
    l_i,
    acc,
    pool_ptr,
    k_row_ptr,
    v_row_ptr,
    col,
    d_mask,
    qk_scale_log2,
    PAGE_WIDTH: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    """One BLOCK_N-key step of the online softmax; returns the new (m_i, l_i, acc)."""
    n = n0 + tl.arange(0, BLOCK_N)
    n_mask = n < kv_end
    kv_mask = n_mask[:, None] & d_mask[None, :]
    k_page = tl.load(k_row_ptr + n, mask=n_mask, other=0).to(tl.int64)
    k = tl.load(pool_ptr + k_page[:, None] * PAGE_WIDTH + col[None, :], mask=kv_mask, other=0.0)
    s = dot_acc(q, tl.trans(k), tl.zeros([q.shape[0], BLOCK_N], tl.float32), DOT_F32)
    visible = n_mask[None, :] & (n[None, :] <= positions[:, None])
    s = tl.where(visible, s * qk_scale_log2, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    v_page = tl.load(v_row_ptr + n, mask=n_mask, other=0).to(tl.int64)
    v = tl.load(pool_ptr + v_page[:, None] * PAGE_WIDTH + col[None, :], mask=kv_mask, other=0.0)
    acc = dot_acc(p.to(v.dtype), v, acc * alpha[:, None], DOT_F32)
    return m_new, l_i * alpha + tl.sum(p, axis=1), acc


@triton.jit
def prefill_kernel(
    q_ptr,
    q_stride_t,
    q_stride_h,
    pool_ptr,
    k_table_ptr,
    v_table_ptr,
    table_stride,
    cu_q_ptr,
    ctx_lens_ptr,
    o_ptr,
    o_stride_t,
    o_stride_h,
    qk_scale_log2,
    PAGE_WIDTH: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    GROUP: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_F32: tl.constexpr,
    WHILE_LOOP: tl.constexpr,
):
    tile = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    first = tl.load(cu_q_ptr + b)
    num_q = tl.load(cu_q_ptr + b + 1) - first
    if tile * BLOCK_M < num_q:
        ctx = tl.load(ctx_lens_ptr + b)
        rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
        r_mask = rows < num_q
        positions = ctx - num_q + rows
        d = tl.arange(0, BLOCK_D)
        d_mask = d < HEAD_DIM
        q = tl.load(
            q_ptr + (first + rows[:, None]) * q_stride_t + h * q_stride_h + d[None, :],
            mask=r_mask[:, None] & d_mask[None, :],
            other=0.0,
        )
        col = (h // GROUP) * HEAD_DIM + d
        k_row_ptr = k_table_ptr + b * table_stride
        v_row_ptr = v_table_ptr + b * table_stride
        # Keys past this tile's last query position are masked for every row: stop there.
        kv_end = tl.minimum(ctx, ctx - num_q + (tile + 1) * BLOCK_M)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        # Key 0 is visible to every row, so after the first block m_i is finite.
        if WHILE_LOOP:
            # The interpreter of triton 3.6 on numpy >= 2.4 cannot run range() to a tensor.
            n0 = 0
            while n0 < kv_end:
                m_i, l_i, acc = attend_block(
                    q, positions, n0, kv_end, m_i, l_i, acc, pool_ptr, k_row_ptr, v_row_ptr,
                    col, d_mask, qk_scale_log2, PAGE_WIDTH, BLOCK_N, DOT_F32,
                )  # fmt: skip
                n0 += BLOCK_N
        else:
            for n0 in range(0, kv_end, BLOCK_N):
                m_i, l_i, acc = attend_block(
                    q, positions, n0, kv_end, m_i, l_i, acc, pool_ptr, k_row_ptr, v_row_ptr,
                    col, d_mask, qk_scale_log2, PAGE_WIDTH, BLOCK_N, DOT_F32,
                )  # fmt: skip
        out = acc / l_i[:, None]
        tl.store(
            o_ptr + (first + rows[:, None]) * o_stride_t + h * o_stride_h + d[None, :],
            out.to(o_ptr.dtype.element_ty),
            mask=r_mask[:, None] & d_mask[None, :],
        )


def paged_prefill_attention(
    q, pool, k_table, v_table, cu_q, ctx_lens, scale, out, max_q, dot_f32, interpreted
):
    _, num_q_heads, head_dim = q.shape
    num_kv_heads = pool.shape[1] // head_dim
    grid = (triton.cdiv(max(1, max_q), BLOCK_M), ctx_lens.shape[0], num_q_heads)
    prefill_kernel[grid](
        q,
        q.stride(0),
        q.stride(1),
        pool,
        k_table,
        v_table,
        k_table.stride(0),
        cu_q,
        ctx_lens,
        out,
        out.stride(0),
        out.stride(1),
        scale * LOG2E,
        PAGE_WIDTH=pool.shape[1],
        HEAD_DIM=head_dim,
        GROUP=num_q_heads // num_kv_heads,
        BLOCK_D=next_pow2(head_dim),
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        DOT_F32=dot_f32,
        WHILE_LOOP=interpreted,
    )
