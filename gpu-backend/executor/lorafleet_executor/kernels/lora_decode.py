"""Triton LoRA kernels for decode (MBGMV-style): one program per row, adapter per row.

They also take the leading one-token rows of a mixed step (LIMIT_ROWS: rows from
row_limit_ptr[0] on belong to the segment kernels of lora_prefill.py and are skipped;
in a CUDA graph that bound is on the device and the grid covers its largest value).

Each program serves one row t, one module m and one block of rank rows (shrink) or
one column chunk of one page (expand), and reads its adapter's rows straight from
the pool pages: every page row is W contiguous elements, loaded as wide vectors.
Rows on the same adapter read the same pages; those hits come from L2, so HBM sees
each adapter's pages about once per step. Work is fp32 throughout.

In the expand, an aligned block of SHARED_BLOCK rows all on one adapter (the engine
groups a step's rows by adapter, plan-builder.ts `inRowOrder`) shares each chunk out
among its rows' programs: each multiplies all the block's rows with a slice of the
chunk's columns on the tensor cores (lora_tiles.py, the segment kernels' tile), reading
each page row once for the block instead of once per row. As in the segment kernels, h
is then rounded to the model dtype. (The shrink has no such path: one program per block
must run the whole K reduction alone and took longer than the rows' programs reading A
from L2; measured in bench/kernels/results/README.md.)
"""

import triton
import triton.language as tl

from .backend import dot_in_fp32
from .lora_tiles import expand_tile, module_columns, slot_rank
from .triton_common import next_pow2


@triton.jit
def row_is_ours(t, row_limit_ptr, LIMIT_ROWS: tl.constexpr):
    """Whether row t is this kernel's: all rows, or those before row_limit_ptr[0]."""
    if LIMIT_ROWS:
        return t < tl.load(row_limit_ptr)
    return t >= 0


@triton.jit
def in_shared_block(
    row_slot_ptr, t, num_rows, row_limit_ptr, LIMIT_ROWS: tl.constexpr, BLOCK_T: tl.constexpr
):
    """Whether row t's aligned block of BLOCK_T rows is whole, ours, and on one adapter."""
    first = t // BLOCK_T * BLOCK_T
    bound = num_rows
    if LIMIT_ROWS:
        bound = tl.minimum(bound, tl.load(row_limit_ptr))
    rows = first + tl.arange(0, BLOCK_T)
    slots = tl.load(row_slot_ptr + rows, mask=rows < bound, other=-1)
    lowest = tl.min(slots, axis=0)
    return (first + BLOCK_T <= bound) & (lowest == tl.max(slots, axis=0)) & (lowest >= 0)


@triton.jit(do_not_specialize=["num_rows", "num_slots"])
def shrink_decode_kernel(
    x_ptr,
    x_stride,
    pool_ptr,
    a_pages_ptr,
    ranks_ptr,
    row_slot_ptr,
    row_limit_ptr,
    h_ptr,
    num_rows,
    IN_FEATURES: tl.constexpr,
    PAGE_WIDTH: tl.constexpr,
    num_slots,
    MAX_RANK: tl.constexpr,
    PAGES_PER_ROW: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
    LIMIT_ROWS: tl.constexpr,
):
    t = tl.program_id(0)
    m = tl.program_id(1)
    j0 = tl.program_id(2) * BLOCK_R
    j = j0 + tl.arange(0, BLOCK_R)
    ours = row_is_ours(t, row_limit_ptr, LIMIT_ROWS)
    slot = tl.load(row_slot_ptr + t)
    rank = tl.where(ours, slot_rank(ranks_ptr, m, num_slots, slot), 0)
    acc = tl.zeros([BLOCK_R, BLOCK_K], dtype=tl.float32)
    if j0 < rank:
        j_mask = j < rank
        page_row = a_pages_ptr + ((m * num_slots + slot) * MAX_RANK + j) * PAGES_PER_ROW
        for p in range(PAGES_PER_ROW):
            page = tl.load(page_row + p, mask=j_mask, other=0).to(tl.int64)
            for c in range(0, PAGE_WIDTH, BLOCK_K):
                off = c + tl.arange(0, BLOCK_K)
                k = p * PAGE_WIDTH + off
                k_mask = (off < PAGE_WIDTH) & (k < IN_FEATURES)
                xv = tl.load(x_ptr + t * x_stride + k, mask=k_mask, other=0.0).to(tl.float32)
                a = tl.load(
                    pool_ptr + page[:, None] * PAGE_WIDTH + off[None, :],
                    mask=j_mask[:, None] & k_mask[None, :],
                    other=0.0,
                ).to(tl.float32)
                acc += a * xv[None, :]
    h = tl.sum(acc, axis=1)
    tl.store(h_ptr + (m * num_rows + t) * MAX_RANK + j, h, mask=(j < MAX_RANK) & ours)


@triton.jit(do_not_specialize=["num_rows", "num_slots"])
def expand_decode_kernel(
    y_ptr,
    y_stride,
    h_ptr,
    pool_ptr,
    b_pages_ptr,
    ranks_ptr,
    row_slot_ptr,
    row_limit_ptr,
    num_rows,
    PAGE_WIDTH: tl.constexpr,
    num_slots,
    MAX_RANK: tl.constexpr,
    PAGES_PER_ROW: tl.constexpr,
    CHUNKS_PER_PAGE: tl.constexpr,
    OUT0,
    OUT1,
    OUT2,
    OUT3,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
    LIMIT_ROWS: tl.constexpr,
    BLOCK_T: tl.constexpr,
    TILE_R: tl.constexpr,
    TILE_N: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    t = tl.program_id(0)
    m = tl.program_id(1)
    p = tl.program_id(2) // CHUNKS_PER_PAGE
    chunk = (tl.program_id(2) % CHUNKS_PER_PAGE) * BLOCK_N
    out, col = module_columns(m, OUT0, OUT1, OUT2, OUT3)
    slot = tl.load(row_slot_ptr + t)
    if in_shared_block(row_slot_ptr, t, num_rows, row_limit_ptr, LIMIT_ROWS, BLOCK_T):
        rank = slot_rank(ranks_ptr, m, num_slots, slot)
        # The block's rows share the chunk out: row i's program does TILE_N of its columns
        # for all the block's rows, in one tile.
        first = t // BLOCK_T * BLOCK_T
        cols = chunk + (t - first) * TILE_N + tl.arange(0, TILE_N)
        cols_mask = (cols < chunk + BLOCK_N) & (cols < PAGE_WIDTH) & (p * PAGE_WIDTH + cols < out)
        if (rank > 0) & ((t - first) * TILE_N < BLOCK_N):
            rows = first + tl.arange(0, BLOCK_T)
            acc = expand_tile(
                h_ptr, rows, rows < num_rows, pool_ptr, b_pages_ptr, m, slot, rank, p, cols,
                cols_mask, num_rows, num_slots, MAX_RANK, PAGE_WIDTH, PAGES_PER_ROW, BLOCK_T,
                TILE_R, TILE_N, DOT_F32,
            )  # fmt: skip
            y = y_ptr + rows[:, None] * y_stride + col + p * PAGE_WIDTH + cols[None, :]
            total = tl.load(y, mask=cols_mask[None, :], other=0.0).to(tl.float32) + acc
            tl.store(y, total.to(y_ptr.dtype.element_ty), mask=cols_mask[None, :])
    else:
        off = chunk + tl.arange(0, BLOCK_N)
        n = p * PAGE_WIDTH + off
        n_mask = (off < PAGE_WIDTH) & (n < out)
        rank = tl.where(
            row_is_ours(t, row_limit_ptr, LIMIT_ROWS), slot_rank(ranks_ptr, m, num_slots, slot), 0
        )
        if (rank > 0) & (p * PAGE_WIDTH < out):
            acc = tl.zeros([BLOCK_R, BLOCK_N], dtype=tl.float32)
            # A constexpr bound (the interpreter of triton 3.6 on numpy >= 2.4
            # cannot loop to a tensor); blocks past the rank skip their loads.
            for j0 in range(0, MAX_RANK, BLOCK_R):
                if j0 < rank:
                    j = j0 + tl.arange(0, BLOCK_R)
                    j_mask = j < rank
                    hv = tl.load(h_ptr + (m * num_rows + t) * MAX_RANK + j, mask=j_mask, other=0.0)
                    page = tl.load(
                        b_pages_ptr + ((m * num_slots + slot) * MAX_RANK + j) * PAGES_PER_ROW + p,
                        mask=j_mask,
                        other=0,
                    ).to(tl.int64)
                    b = tl.load(
                        pool_ptr + page[:, None] * PAGE_WIDTH + off[None, :],
                        mask=j_mask[:, None] & n_mask[None, :],
                        other=0.0,
                    ).to(tl.float32)
                    acc += b * hv[:, None]
            y = y_ptr + t * y_stride + col + n
            total = tl.load(y, mask=n_mask, other=0.0).to(tl.float32) + tl.sum(acc, axis=0)
            tl.store(y, total.to(y_ptr.dtype.element_ty), mask=n_mask)


# The expand's blocks of rows on one adapter (tl.dot wants every dim >= 16).
SHARED_BLOCK = 16
TILE_R = 16


# Block sizes from bench/kernels/lora_tune.py on an H200 (Llama-2-7B q/k/v, bf16): wide
# 1024-element page-row loads beat 256/512 by 1.4x (shrink) and 5x (expand).
def shrink_decode(
    x, pool, a_pages, ranks, row_slot, h, row_limit=None, grid_rows=None,
    block_r=4, block_k=1024, num_warps=4,
) -> None:  # fmt: skip
    """row_limit: int32 device tensor whose [0] bounds the rows done (all without it);
    grid_rows: the programs launched, a host bound of it (default: every row)."""
    num_modules, _, max_rank, pages_per_row = a_pages.shape
    num_rows, in_features = x.shape
    page_width = pool.shape[1]
    block_r = min(block_r, next_pow2(max_rank))
    block_k = min(block_k, next_pow2(page_width))
    grid = (grid_rows or num_rows, num_modules, triton.cdiv(max_rank, block_r))
    shrink_decode_kernel[grid](
        x,
        x.stride(0),
        pool,
        a_pages,
        ranks,
        row_slot,
        row_slot if row_limit is None else row_limit,
        h,
        num_rows,
        in_features,
        page_width,
        a_pages.shape[1],
        max_rank,
        pages_per_row,
        BLOCK_R=block_r,
        BLOCK_K=block_k,
        LIMIT_ROWS=row_limit is not None,
        num_warps=num_warps,
    )


def expand_decode(
    y, h, pool, b_pages, ranks, row_slot, out_features, row_limit=None, grid_rows=None,
    block_r=16, block_n=1024, num_warps=4,
) -> None:  # fmt: skip
    """row_limit, grid_rows: as shrink_decode."""
    num_modules, num_slots, max_rank, pages_per_row = b_pages.shape
    page_width = pool.shape[1]
    block_r = min(block_r, next_pow2(max_rank))
    block_n = min(block_n, next_pow2(page_width))
    chunks_per_page = triton.cdiv(page_width, block_n)
    outs = list(out_features) + [0] * (4 - len(out_features))
    grid = (grid_rows or y.shape[0], num_modules, pages_per_row * chunks_per_page)
    expand_decode_kernel[grid](
        y,
        y.stride(0),
        h,
        pool,
        b_pages,
        ranks,
        row_slot,
        row_slot if row_limit is None else row_limit,
        y.shape[0],
        page_width,
        num_slots,
        max_rank,
        pages_per_row,
        chunks_per_page,
        *outs,
        BLOCK_R=block_r,
        BLOCK_N=block_n,
        LIMIT_ROWS=row_limit is not None,
        BLOCK_T=SHARED_BLOCK,
        TILE_R=TILE_R,
        TILE_N=max(16, block_n // SHARED_BLOCK),
        DOT_F32=dot_in_fp32(y.dtype, y.device),
        num_warps=num_warps,
    )
