"""Triton paged decode attention, flash-decoding style (split over the context).

Phase 1: a program per (sequence, KV head, context partition) loads each K/V page row
of its partition once and serves all G = Hq/Hkv query heads of that KV head with it
(GQA-aware: K/V bytes are read once per group, not once per query head), keeping an
online softmax; it writes the unnormalised partial output with its max and sum.
Phase 2: a program per (sequence, query head) merges the partitions.
Splitting the context keeps the GPU busy when few sequences have long contexts.
"""

import torch
import triton
import triton.language as tl

from .triton_common import dot_acc, next_pow2

LOG2E = 1.4426950408889634
PARTITION = 256
BLOCK_N = 64


@triton.jit
def decode_partial_kernel(
    q_ptr,
    q_stride_t,
    q_stride_h,
    pool_ptr,
    k_table_ptr,
    v_table_ptr,
    table_stride,
    cu_q_ptr,
    ctx_lens_ptr,
    o_part_ptr,
    m_part_ptr,
    l_part_ptr,
    qk_scale_log2,
    num_q_heads,
    num_splits,
    PAGE_WIDTH: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    GROUP: tl.constexpr,
    G_PAD: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PARTITION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    b = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    ctx = tl.load(ctx_lens_ptr + b)
    row = tl.load(cu_q_ptr + b)
    g = tl.arange(0, G_PAD)
    d = tl.arange(0, BLOCK_D)
    heads = kv_head * GROUP + g
    g_mask = g < GROUP
    d_mask = d < HEAD_DIM
    q = tl.load(
        q_ptr + row * q_stride_t + heads[:, None] * q_stride_h + d[None, :],
        mask=g_mask[:, None] & d_mask[None, :],
        other=0.0,
    )
    m_i = tl.full([G_PAD], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([G_PAD], dtype=tl.float32)
    acc = tl.zeros([G_PAD, BLOCK_D], dtype=tl.float32)
    start = split * PARTITION
    for i in range(0, PARTITION, BLOCK_N):
        if start + i < ctx:
            n = start + i + tl.arange(0, BLOCK_N)
            n_mask = n < ctx
            kv_mask = n_mask[:, None] & d_mask[None, :]
            col = kv_head * HEAD_DIM + d[None, :]
            k_page = tl.load(k_table_ptr + b * table_stride + n, mask=n_mask, other=0).to(tl.int64)
            k = tl.load(pool_ptr + k_page[:, None] * PAGE_WIDTH + col, mask=kv_mask, other=0.0)
            s = dot_acc(q, tl.trans(k), tl.zeros([G_PAD, BLOCK_N], tl.float32), DOT_F32)
            s = tl.where(n_mask[None, :], s * qk_scale_log2, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v_page = tl.load(v_table_ptr + b * table_stride + n, mask=n_mask, other=0).to(tl.int64)
            v = tl.load(pool_ptr + v_page[:, None] * PAGE_WIDTH + col, mask=kv_mask, other=0.0)
            acc = dot_acc(p.to(v.dtype), v, acc * alpha[:, None], DOT_F32)
            m_i = m_new
    part = (b * num_q_heads + heads) * num_splits + split  # [G_PAD]
    tl.store(m_part_ptr + part, m_i, mask=g_mask)
    tl.store(l_part_ptr + part, l_i, mask=g_mask)
    tl.store(
        o_part_ptr + part[:, None] * HEAD_DIM + d[None, :],
        acc,
        mask=g_mask[:, None] & d_mask[None, :],
    )


@triton.jit
def decode_merge_kernel(
    o_ptr,
    o_stride_t,
    o_stride_h,
    cu_q_ptr,
    o_part_ptr,
    m_part_ptr,
    l_part_ptr,
    num_q_heads,
    num_splits,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    SPLITS_PAD: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    s = tl.arange(0, SPLITS_PAD)
    d = tl.arange(0, BLOCK_D)
    s_mask = s < num_splits
    part = (b * num_q_heads + h) * num_splits + s
    m = tl.load(m_part_ptr + part, mask=s_mask, other=float("-inf"))
    l_part = tl.load(l_part_ptr + part, mask=s_mask, other=0.0)
    o = tl.load(
        o_part_ptr + part[:, None] * HEAD_DIM + d[None, :],
        mask=s_mask[:, None] & (d[None, :] < HEAD_DIM),
        other=0.0,
    )
    # Empty partitions carry m = -inf and weigh exp2(-inf) = 0; partition 0 is never empty.
    w = tl.exp2(m - tl.max(m, axis=0))
    out = tl.sum(o * w[:, None], axis=0) / tl.sum(l_part * w, axis=0)
    row = tl.load(cu_q_ptr + b)
    tl.store(
        o_ptr + row * o_stride_t + h * o_stride_h + d,
        out.to(o_ptr.dtype.element_ty),
        mask=d < HEAD_DIM,
    )


def paged_decode_attention(q, pool, k_table, v_table, cu_q, ctx_lens, scale, out, dot_f32):
    num_seqs = ctx_lens.shape[0]
    _, num_q_heads, head_dim = q.shape
    num_kv_heads = pool.shape[1] // head_dim
    group = num_q_heads // num_kv_heads
    # The grid is sized from the table width, a host-known bound, so no sync and
    # CUDA-graph friendly; partitions past a sequence's context exit at once.
    num_splits = triton.cdiv(max(1, k_table.shape[1]), PARTITION)
    parts = dict(device=q.device, dtype=torch.float32)
    o_part = torch.empty(num_seqs, num_q_heads, num_splits, head_dim, **parts)
    m_part = torch.empty(num_seqs, num_q_heads, num_splits, **parts)
    l_part = torch.empty(num_seqs, num_q_heads, num_splits, **parts)
    block_d = next_pow2(head_dim)
    decode_partial_kernel[(num_seqs, num_kv_heads, num_splits)](
        q,
        q.stride(0),
        q.stride(1),
        pool,
        k_table,
        v_table,
        k_table.stride(0),
        cu_q,
        ctx_lens,
        o_part,
        m_part,
        l_part,
        scale * LOG2E,
        num_q_heads,
        num_splits,
        PAGE_WIDTH=pool.shape[1],
        HEAD_DIM=head_dim,
        GROUP=group,
        G_PAD=max(16, next_pow2(group)),  # tl.dot wants every dim >= 16
        BLOCK_D=block_d,
        PARTITION=PARTITION,
        BLOCK_N=BLOCK_N,
        DOT_F32=dot_f32,
    )
    decode_merge_kernel[(num_seqs, num_q_heads)](
        out,
        out.stride(0),
        out.stride(1),
        cu_q,
        o_part,
        m_part,
        l_part,
        num_q_heads,
        num_splits,
        HEAD_DIM=head_dim,
        BLOCK_D=block_d,
        SPLITS_PAD=next_pow2(num_splits),
    )
