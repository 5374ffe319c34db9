"""Triton LoRA kernels for prefill (SGMV-style): segments of rows share one adapter.

A program takes a tile of BLOCK_T rows of one segment and multiplies it with tiles of
that segment's adapter gathered from pool pages, on the tensor cores (tl.dot, fp32
accumulate). Grid axis 0 enumerates (segment, row tile); tiles past a segment's end
exit at once, so no host sync is needed to size the grid (the longest run, known on the
host from `run_lengths`, tightens it).
"""

import triton
import triton.language as tl

from .lora_tiles import expand_tile, module_columns, slot_rank
from .triton_common import dot_acc, next_pow2

BLOCK_T = 64


@triton.jit(do_not_specialize=["num_rows", "num_slots", "row_tiles"])
def shrink_prefill_kernel(
    x_ptr,
    x_stride,
    pool_ptr,
    a_pages_ptr,
    ranks_ptr,
    seg_starts_ptr,
    seg_slot_ptr,
    h_ptr,
    num_rows,
    IN_FEATURES: tl.constexpr,
    PAGE_WIDTH: tl.constexpr,
    num_slots,
    MAX_RANK: tl.constexpr,
    PAGES_PER_ROW: tl.constexpr,
    row_tiles,
    BLOCK_T: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    seg = tl.program_id(0) // row_tiles
    m = tl.program_id(1)
    j0 = tl.program_id(2) * BLOCK_R
    end = tl.load(seg_starts_ptr + seg + 1)
    row0 = tl.load(seg_starts_ptr + seg) + (tl.program_id(0) % row_tiles) * BLOCK_T
    if row0 < end:
        rows = row0 + tl.arange(0, BLOCK_T)
        r_mask = rows < end
        j = j0 + tl.arange(0, BLOCK_R)
        slot = tl.load(seg_slot_ptr + seg)
        rank = slot_rank(ranks_ptr, m, num_slots, slot)
        acc = tl.zeros([BLOCK_T, BLOCK_R], dtype=tl.float32)
        if j0 < rank:
            j_mask = j < rank
            page_row = a_pages_ptr + ((m * num_slots + slot) * MAX_RANK + j) * PAGES_PER_ROW
            for p in range(PAGES_PER_ROW):
                page = tl.load(page_row + p, mask=j_mask, other=0).to(tl.int64)
                for c in range(0, PAGE_WIDTH, BLOCK_K):
                    off = c + tl.arange(0, BLOCK_K)
                    k = p * PAGE_WIDTH + off
                    k_mask = (off < PAGE_WIDTH) & (k < IN_FEATURES)
                    xt = tl.load(
                        x_ptr + rows[:, None] * x_stride + k[None, :],
                        mask=r_mask[:, None] & k_mask[None, :],
                        other=0.0,
                    )
                    at = tl.load(
                        pool_ptr + page[None, :] * PAGE_WIDTH + off[:, None],
                        mask=k_mask[:, None] & j_mask[None, :],
                        other=0.0,
                    )
                    acc = dot_acc(xt, at, acc, DOT_F32)
        h = h_ptr + (m * num_rows + rows[:, None]) * MAX_RANK + j[None, :]
        tl.store(h, acc, mask=r_mask[:, None] & (j[None, :] < MAX_RANK))


@triton.jit(do_not_specialize=["num_rows", "num_slots", "row_tiles"])
def expand_prefill_kernel(
    y_ptr,
    y_stride,
    h_ptr,
    pool_ptr,
    b_pages_ptr,
    ranks_ptr,
    seg_starts_ptr,
    seg_slot_ptr,
    num_rows,
    PAGE_WIDTH: tl.constexpr,
    num_slots,
    MAX_RANK: tl.constexpr,
    PAGES_PER_ROW: tl.constexpr,
    CHUNKS_PER_PAGE: tl.constexpr,
    row_tiles,
    OUT0,
    OUT1,
    OUT2,
    OUT3,
    BLOCK_T: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    seg = tl.program_id(0) // row_tiles
    m = tl.program_id(1)
    p = tl.program_id(2) // CHUNKS_PER_PAGE
    off = (tl.program_id(2) % CHUNKS_PER_PAGE) * BLOCK_N + tl.arange(0, BLOCK_N)
    out, col = module_columns(m, OUT0, OUT1, OUT2, OUT3)
    end = tl.load(seg_starts_ptr + seg + 1)
    row0 = tl.load(seg_starts_ptr + seg) + (tl.program_id(0) % row_tiles) * BLOCK_T
    slot = tl.load(seg_slot_ptr + seg)
    rank = slot_rank(ranks_ptr, m, num_slots, slot)
    if (row0 < end) & (rank > 0) & (p * PAGE_WIDTH < out):
        rows = row0 + tl.arange(0, BLOCK_T)
        r_mask = rows < end
        n = p * PAGE_WIDTH + off
        n_mask = (off < PAGE_WIDTH) & (n < out)
        acc = expand_tile(
            h_ptr, rows, r_mask, pool_ptr, b_pages_ptr, m, slot, rank, p, off, n_mask,
            num_rows, num_slots, MAX_RANK, PAGE_WIDTH, PAGES_PER_ROW, BLOCK_T, BLOCK_R,
            BLOCK_N, DOT_F32,
        )  # fmt: skip
        y = y_ptr + rows[:, None] * y_stride + col + n[None, :]
        mask = r_mask[:, None] & n_mask[None, :]
        total = tl.load(y, mask=mask, other=0.0).to(tl.float32) + acc
        tl.store(y, total.to(y_ptr.dtype.element_ty), mask=mask)


def _rank_block(max_rank: int) -> int:
    return min(64, max(16, next_pow2(max_rank)))  # tl.dot wants every dim >= 16


# From bench/kernels/lora_tune.py --prefill on an H100 (Llama-2-7B q/k/v, bf16, tables
# padded to rank 64): 32 rank columns, 8 warps and 4 stages take 12.5-13 µs for 256-1024
# rows where 64 columns, 4 warps and 3 stages took 18.5 (the K loop is latency-bound).
def shrink_prefill(
    x, pool, a_pages, ranks, segments, h, max_segment_len, dot_f32,
    block_r=None, block_k=64, num_warps=8, num_stages=4,
) -> None:  # fmt: skip
    seg_starts, seg_slot = segments
    num_modules, num_slots, max_rank, pages_per_row = a_pages.shape
    num_rows, in_features = x.shape
    block_r = block_r or min(32, _rank_block(max_rank))
    row_tiles = triton.cdiv(max(1, max_segment_len), BLOCK_T)
    grid = (seg_slot.shape[0] * row_tiles, num_modules, triton.cdiv(max_rank, block_r))
    shrink_prefill_kernel[grid](
        x,
        x.stride(0),
        pool,
        a_pages,
        ranks,
        seg_starts,
        seg_slot,
        h,
        num_rows,
        in_features,
        pool.shape[1],
        num_slots,
        max_rank,
        pages_per_row,
        row_tiles,
        BLOCK_T=BLOCK_T,
        BLOCK_R=block_r,
        BLOCK_K=block_k,
        DOT_F32=dot_f32,
        num_warps=num_warps,
        num_stages=num_stages,
    )


def expand_prefill(
    y, h, pool, b_pages, ranks, segments, out_features, max_segment_len, dot_f32
) -> None:
    seg_starts, seg_slot = segments
    num_modules, num_slots, max_rank, pages_per_row = b_pages.shape
    page_width = pool.shape[1]
    block_n = min(128, max(16, next_pow2(page_width)))
    chunks_per_page = triton.cdiv(page_width, block_n)
    row_tiles = triton.cdiv(max(1, max_segment_len), BLOCK_T)
    outs = list(out_features) + [0] * (4 - len(out_features))
    grid = (seg_slot.shape[0] * row_tiles, num_modules, pages_per_row * chunks_per_page)
    expand_prefill_kernel[grid](
        y,
        y.stride(0),
        h,
        pool,
        b_pages,
        ranks,
        seg_starts,
        seg_slot,
        y.shape[0],
        page_width,
        num_slots,
        max_rank,
        pages_per_row,
        chunks_per_page,
        row_tiles,
        *outs,
        BLOCK_T=BLOCK_T,
        BLOCK_R=_rank_block(max_rank),
        BLOCK_N=block_n,
        DOT_F32=dot_f32,
    )
