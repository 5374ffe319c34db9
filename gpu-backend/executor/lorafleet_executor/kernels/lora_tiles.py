"""Device functions of the LoRA kernels: where a module's columns lie, a slot's rank, and
the expand's tensor-core tile, which multiplies a block of rows on one adapter with that
adapter's Bᵀ rows gathered from pool pages: the segment expand's whole work
(lora_prefill.py) and the decode expand's on aligned blocks of rows that share an
adapter (lora_decode.py).
"""

import triton
import triton.language as tl

from .triton_common import dot_acc


@triton.jit
def module_columns(m, OUT0, OUT1, OUT2, OUT3):
    """(out_features[m], first column of module m in y) for up to 4 fused modules."""
    out = tl.where(m == 0, OUT0, tl.where(m == 1, OUT1, tl.where(m == 2, OUT2, OUT3)))
    col = tl.where(
        m == 0, 0, tl.where(m == 1, OUT0, tl.where(m == 2, OUT0 + OUT1, OUT0 + OUT1 + OUT2))
    )
    return out, col


@triton.jit
def slot_rank(ranks_ptr, m, num_slots, slot):
    """Module m's rank in `slot`'s adapter; 0 for rows without one (slot -1)."""
    return tl.where(slot >= 0, tl.load(ranks_ptr + m * num_slots + tl.maximum(slot, 0)), 0)


@triton.jit
def expand_tile(
    h_ptr,
    rows,
    r_mask,
    pool_ptr,
    b_pages_ptr,
    m,
    slot,
    rank,
    p,
    off,
    n_mask,
    num_rows,
    num_slots,
    MAX_RANK: tl.constexpr,
    PAGE_WIDTH: tl.constexpr,
    PAGES_PER_ROW: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    """fp32 [BLOCK_T, BLOCK_N]: h[m, rows] @ Bᵀ of `slot`'s module m, columns `off` of page p."""
    acc = tl.zeros([BLOCK_T, BLOCK_N], dtype=tl.float32)
    # A constexpr bound (the interpreter of triton 3.6 on numpy >= 2.4
    # cannot loop to a tensor); blocks past the rank skip their loads.
    for j0 in range(0, MAX_RANK, BLOCK_R):
        if j0 < rank:
            j = j0 + tl.arange(0, BLOCK_R)
            j_mask = j < rank
            ht = tl.load(
                h_ptr + (m * num_rows + rows[:, None]) * MAX_RANK + j[None, :],
                mask=r_mask[:, None] & j_mask[None, :],
                other=0.0,
            )
            page = tl.load(
                b_pages_ptr + ((m * num_slots + slot) * MAX_RANK + j) * PAGES_PER_ROW + p,
                mask=j_mask,
                other=0,
            ).to(tl.int64)
            bt = tl.load(
                pool_ptr + page[:, None] * PAGE_WIDTH + off[None, :],
                mask=j_mask[:, None] & n_mask[None, :],
                other=0.0,
            )
            # h is rounded to the model dtype here, as punica's and S-LoRA's kernels do.
            acc = dot_acc(ht.to(bt.dtype), bt, acc, DOT_F32)
    return acc
