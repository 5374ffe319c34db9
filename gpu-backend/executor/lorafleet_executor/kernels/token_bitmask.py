"""Grammar masks on a batch's logits: one launch for every constrained row, before sampling.

A bitmask row holds one bit per vocabulary id, 32 to an int32 word, bit set = allowed
(llguidance's layout: token t is bit t % 32 of word t // 32). Mask row k applies to
logits row `rows[k]`; logits rows not listed are never read or written, so a step whose
rows carry no grammar launches nothing at all (the caller skips the call).

    for k, r in enumerate(rows):
        for t in range(V):
            if not (bitmask[k, t // 32] >> (t % 32)) & 1:
                logits[r, t] = -inf

Ids past the bitmask's 32 * W bits count as disallowed.
"""

import torch
import triton
import triton.language as tl

from .backend import require_runnable, use_triton
from .checks import require, require_float, require_same_device

BLOCK = 1024


def apply_token_bitmask_reference(
    logits: torch.Tensor, bitmask: torch.Tensor, rows: torch.Tensor
) -> None:
    """logits [N, V] float (in place), bitmask int32 [K, W], rows int32 [K] into logits."""
    vocab = logits.shape[1]
    shifts = torch.arange(32, device=logits.device, dtype=torch.int32)
    allowed = ((bitmask.unsqueeze(-1) >> shifts) & 1).bool().flatten(1)  # [K, 32 W]
    if allowed.shape[1] < vocab:  # ids past the bitmask are disallowed
        allowed = torch.nn.functional.pad(allowed, (0, vocab - allowed.shape[1]))
    index = rows.long()
    logits[index] = logits[index].masked_fill(~allowed[:, :vocab], float("-inf"))


@triton.jit
def apply_token_bitmask_kernel(
    logits_ptr,
    logits_stride,
    bitmask_ptr,
    bitmask_stride,
    rows_ptr,
    vocab,
    words,
    BLOCK: tl.constexpr,
):
    k = tl.program_id(0)
    row = tl.load(rows_ptr + k).to(tl.int64)
    ids = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    in_vocab = ids < vocab
    word = ids // 32
    bits = tl.load(bitmask_ptr + k * bitmask_stride + word, mask=in_vocab & (word < words), other=0)
    banned = ((bits >> (ids % 32)) & 1) == 0
    ninf = tl.full((BLOCK,), float("-inf"), tl.float32).to(logits_ptr.dtype.element_ty)
    tl.store(logits_ptr + row * logits_stride + ids, ninf, mask=in_vocab & banned)


def apply_token_bitmask(
    logits: torch.Tensor, bitmask: torch.Tensor, rows: torch.Tensor, *, backend: str = "auto"
) -> None:
    """Sets the disallowed ids of logits rows `rows` to -inf, in place (see module doc)."""
    require_float("logits", logits, 2)
    require(logits.stride(1) == 1, "logits' rows must be contiguous")
    require(bitmask.dtype == torch.int32 and bitmask.dim() == 2, "bitmask must be int32 [K, W]")
    require(bitmask.stride(1) == 1, "bitmask's rows must be contiguous")
    require(rows.dtype == torch.int32 and rows.dim() == 1, "rows must be int32 [K]")
    require(rows.is_contiguous(), "rows must be contiguous")
    require(
        rows.shape[0] == bitmask.shape[0],
        f"{rows.shape[0]} rows for {bitmask.shape[0]} bitmask rows",
    )
    require_same_device(logits=logits, bitmask=bitmask, rows=rows)
    if rows.shape[0] == 0:
        return
    if not use_triton(backend, logits.device):
        apply_token_bitmask_reference(logits, bitmask, rows)
        return
    require_runnable(apply_token_bitmask_kernel, logits.device)
    vocab = logits.shape[1]
    grid = (rows.shape[0], triton.cdiv(vocab, BLOCK))
    apply_token_bitmask_kernel[grid](
        logits,
        logits.stride(0),
        bitmask,
        bitmask.stride(0),
        rows,
        vocab,
        bitmask.shape[1],
        BLOCK=BLOCK,
    )
