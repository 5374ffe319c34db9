"""Heterogeneous-batch LoRA over pool pages (S-LoRA's Unified Paging, punica's BGMV/SGMV).

One step's rows use different adapters of different ranks (and some none). Adapter
weights sit in the layer's pool `[P, W]` as PROTOCOL.md lays them out: each row of A
(length `in`) and of Bᵀ (length `out`, already scaled) in ceil(len/W) pages, the tail
of the last page zero. Page tables name them per module, slot and rank row.

Example (q/k/v fused, shared x):

    h = lora_shrink(x, pool, a_pages, ranks, row_slot)              # [3, T, R] fp32
    lora_expand(qkv, h, pool, b_pages, ranks, row_slot, [q_out, k_out, v_out])
"""

import numpy as np
import torch

from . import lora_decode, lora_prefill
from .backend import dot_in_fp32, require_runnable, use_triton
from .checks import (
    require,
    require_float,
    require_in_range,
    require_int32,
    require_offsets,
    require_row_major,
    require_same_device,
    should_validate_values,
)
from .lora_bmm import (
    lora_expand_bmm,
    lora_expand_bmm_segments,
    lora_shrink_bmm,
    lora_shrink_bmm_segments,
)
from .lora_reference import lora_expand_reference, lora_shrink_reference

MAX_FUSED_MODULES = 4  # q/k/v is the most modules that share one input

Segments = tuple[torch.Tensor, torch.Tensor]


def lora_shrink(
    x: torch.Tensor,
    pool: torch.Tensor,
    a_pages: torch.Tensor,
    ranks: torch.Tensor,
    row_slot: torch.Tensor,
    *,
    segments: Segments | None = None,
    lead_rows: int = 0,
    backend: str = "auto",
    run_lengths: np.ndarray | None = None,
    validate: bool | None = None,
) -> torch.Tensor:
    """h = x @ Aᵀ per row, with each row's own adapter, for M modules sharing x.

        x         [T, in]             model dtype
        pool      [P, W]              model dtype, one layer's pool
        a_pages   int32 [M, S, R, ceil(in/W)]   page of A_{m,s}[j, p*W:(p+1)*W]
        ranks     int32 [M, S]        0: slot s's adapter does not target module m
        row_slot  int32 [T]           -1: row t has no adapter
        segments  (seg_starts int32 [n+1], seg_slot int32 [n]): runs of rows on one slot
        returns h float32 [M, T, R]

        for m, t: s = row_slot[t]; r = ranks[m, s] if s >= 0 else 0
            h[m, t, :r] = A_{m,s}[:r, :in] @ x[t]     (fp32 accumulate)
            h[m, t, r:] = 0

    backend "torch" is the fp32 reference on CPU and, on CUDA, the gather-and-bmm
    baseline in the model dtype (lora_bmm.py, the paper's S-LoRA-bmm).
    Without `segments` the decode kernel runs (one program per row); with them the
    prefill kernel (tl.dot tiles per segment). Segments cover rows seg_starts[0] .. T; the
    rows before seg_starts[0] (a mixed step's decode rows, at most `lead_rows` of them)
    go one per program as without segments. `run_lengths`, the runs' lengths as a host
    array, sizes the prefill grid (its longest; default T) and the bmm baseline's padding
    without a host sync. `validate` checks metadata values (a host sync on CUDA; default:
    only on CPU).
    """
    require_float("x", x, 2)
    require_float("pool", pool, 2)
    require(x.dtype == pool.dtype, f"x ({x.dtype}) and pool ({pool.dtype}) must share a dtype")
    require_row_major("x", x)
    require(pool.is_contiguous(), "pool must be contiguous")
    require(a_pages.dim() == 4, f"a_pages must be [M, S, R, pages], got {tuple(a_pages.shape)}")
    num_modules, num_slots, max_rank, pages_per_row = a_pages.shape
    num_rows, in_features = x.shape
    page_width = pool.shape[1]
    require(
        pages_per_row == -(-in_features // page_width),
        f"a_pages' last dim must be ceil(in / W) = {-(-in_features // page_width)}"
        f" for in={in_features}, W={page_width}; got {pages_per_row}",
    )
    _check_metadata(
        a_pages, "a_pages", ranks, row_slot, segments, lead_rows, pool, num_rows, validate
    )
    require_same_device(x=x, pool=pool, a_pages=a_pages, ranks=ranks, row_slot=row_slot)
    h = torch.empty(num_modules, num_rows, max_rank, dtype=torch.float32, device=x.device)
    if not use_triton(backend, x.device):
        if x.device.type != "cuda":
            h.copy_(lora_shrink_reference(x, pool, a_pages, ranks, row_slot))
        elif segments is None:
            h.copy_(lora_shrink_bmm(x, pool, a_pages, ranks, row_slot))
        else:
            h.copy_(lora_shrink_bmm_segments(x, pool, a_pages, ranks, segments, run_lengths))
            if lead_rows:
                lead = _lead_slots(row_slot, segments, lead_rows)
                h[:, :lead_rows] += lora_shrink_bmm(x[:lead_rows], pool, a_pages, ranks, lead)
        return h
    if num_rows == 0:
        return h
    if segments is None:
        require_runnable(lora_decode.shrink_decode_kernel, x.device)
        lora_decode.shrink_decode(x, pool, a_pages, ranks, row_slot, h)
    else:
        require_runnable(lora_prefill.shrink_prefill_kernel, x.device)
        if lead_rows:
            lora_decode.shrink_decode(
                x, pool, a_pages, ranks, row_slot, h, segments[0], grid_rows=lead_rows
            )
        lora_prefill.shrink_prefill(
            x,
            pool,
            a_pages,
            ranks,
            segments,
            h,
            _longest_run(run_lengths, num_rows),
            dot_in_fp32(x.dtype, x.device),
        )
    return h


def lora_expand(
    y: torch.Tensor,
    h: torch.Tensor,
    pool: torch.Tensor,
    b_pages: torch.Tensor,
    ranks: torch.Tensor,
    row_slot: torch.Tensor,
    out_features: list[int],
    *,
    segments: Segments | None = None,
    lead_rows: int = 0,
    backend: str = "auto",
    run_lengths: np.ndarray | None = None,
    validate: bool | None = None,
) -> None:
    """y += h @ Bᵀ per row, with each row's own adapter, into M modules' column blocks.

        y         [T, sum(out_features)]        model dtype, updated in place
        h         float32 [M, T, R]             from lora_shrink
        pool      [P, W]
        b_pages   int32 [M, S, R, ceil(max(out_features)/W)]   page of Bᵀ_{m,s}[j, p*W:...]
        ranks, row_slot, segments: as lora_shrink
        out_features  list of M ints; module m owns columns c_m = sum(out[:m]) .. + out[m]

        for m, t: s = row_slot[t]; r = ranks[m, s] if s >= 0 else 0
            y[t, c_m:c_m+out[m]] += h[m, t, :r] @ Bᵀ_{m,s}[:r, :out[m]]   (fp32, one rounding)

    Bᵀ rows already carry the adapter's scale (PROTOCOL.md), so nothing is scaled here.
    """
    require_float("y", y, 2)
    require_float("pool", pool, 2)
    require(y.dtype == pool.dtype, f"y ({y.dtype}) and pool ({pool.dtype}) must share a dtype")
    require_row_major("y", y)
    require(pool.is_contiguous(), "pool must be contiguous")
    require(b_pages.dim() == 4, f"b_pages must be [M, S, R, pages], got {tuple(b_pages.shape)}")
    num_modules, num_slots, max_rank, pages_per_row = b_pages.shape
    num_rows = y.shape[0]
    out_features = [int(o) for o in out_features]
    require(
        len(out_features) == num_modules,
        f"out_features must list M={num_modules} sizes, got {out_features}",
    )
    require(all(o > 0 for o in out_features), f"out_features must be positive, got {out_features}")
    require(
        num_modules <= MAX_FUSED_MODULES,
        f"at most {MAX_FUSED_MODULES} fused modules, got {num_modules}",
    )
    require(
        y.shape[1] == sum(out_features),
        f"y has {y.shape[1]} columns but out_features sum to {sum(out_features)}",
    )
    page_width = pool.shape[1]
    expected_pages = -(-max(out_features) // page_width)
    require(
        pages_per_row == expected_pages,
        f"b_pages' last dim must be ceil(max(out) / W) = {expected_pages}, got {pages_per_row}",
    )
    require(h.dtype == torch.float32, f"h must be float32, got {h.dtype}")
    require(
        tuple(h.shape) == (num_modules, num_rows, max_rank) and h.is_contiguous(),
        f"h must be contiguous [M, T, R] = {(num_modules, num_rows, max_rank)},"
        f" got {tuple(h.shape)}",
    )
    _check_metadata(
        b_pages, "b_pages", ranks, row_slot, segments, lead_rows, pool, num_rows, validate
    )
    require_same_device(y=y, h=h, pool=pool, b_pages=b_pages, ranks=ranks, row_slot=row_slot)
    if not use_triton(backend, y.device):
        if y.device.type != "cuda":
            lora_expand_reference(y, h, pool, b_pages, ranks, row_slot, out_features)
        elif segments is None:
            lora_expand_bmm(y, h, pool, b_pages, ranks, row_slot, out_features)
        else:
            lora_expand_bmm_segments(
                y, h, pool, b_pages, ranks, segments, run_lengths, out_features
            )
            if lead_rows:
                lead = _lead_slots(row_slot, segments, lead_rows)
                lora_expand_bmm(
                    y[:lead_rows], h[:, :lead_rows], pool, b_pages, ranks, lead, out_features
                )
        return
    if num_rows == 0:
        return
    if segments is None:
        require_runnable(lora_decode.expand_decode_kernel, y.device)
        lora_decode.expand_decode(y, h, pool, b_pages, ranks, row_slot, out_features)
    else:
        require_runnable(lora_prefill.expand_prefill_kernel, y.device)
        if lead_rows:
            lora_decode.expand_decode(
                y, h, pool, b_pages, ranks, row_slot, out_features, segments[0], lead_rows
            )
        lora_prefill.expand_prefill(
            y,
            h,
            pool,
            b_pages,
            ranks,
            segments,
            out_features,
            _longest_run(run_lengths, num_rows),
            dot_in_fp32(y.dtype, y.device),
        )


def _lead_slots(row_slot: torch.Tensor, segments: Segments, lead_rows: int) -> torch.Tensor:
    """row_slot's first lead_rows entries, -1 from seg_starts[0] on (no host sync)."""
    rows = torch.arange(lead_rows, device=row_slot.device)
    return torch.where(rows < segments[0][:1], row_slot[:lead_rows], -1)


def _longest_run(run_lengths: np.ndarray | None, num_rows: int) -> int:
    return num_rows if run_lengths is None else int(np.max(run_lengths, initial=0))


def _check_metadata(
    pages: torch.Tensor,
    pages_name: str,
    ranks: torch.Tensor,
    row_slot: torch.Tensor,
    segments: Segments | None,
    lead_rows: int,
    pool: torch.Tensor,
    num_rows: int,
    validate: bool | None,
) -> None:
    num_modules, num_slots, max_rank, _ = pages.shape
    require(pages.dtype == torch.int32, f"{pages_name} must be int32, got {pages.dtype}")
    require(pages.is_contiguous(), f"{pages_name} must be contiguous")
    require(max_rank >= 1, f"{pages_name} must have a padded rank R >= 1")
    require_int32("ranks", ranks, (num_modules, num_slots))
    require_int32("row_slot", row_slot, (num_rows,))
    require(ranks.is_contiguous() and row_slot.is_contiguous(), "metadata must be contiguous")
    if segments is not None:
        require(
            isinstance(segments, tuple) and len(segments) == 2,
            "segments must be (seg_starts, seg_slot)",
        )
        seg_starts, seg_slot = segments
        require(seg_slot.dim() == 1, f"seg_slot must be 1-D, got {tuple(seg_slot.shape)}")
        require_int32("seg_starts", seg_starts, (seg_slot.shape[0] + 1,))
        require_int32("seg_slot", seg_slot, (seg_slot.shape[0],))
        require_same_device(seg_starts=seg_starts, seg_slot=seg_slot, pool=pool)
        require(
            0 <= lead_rows <= num_rows, f"lead_rows must lie in [0, {num_rows}], got {lead_rows}"
        )
    else:
        require(lead_rows == 0, "lead_rows needs segments")
    if not should_validate_values(validate, pool.device):
        return
    require_in_range(pages_name, pages, 0, pool.shape[0])
    require_in_range("ranks", ranks, 0, max_rank + 1)
    require_in_range("row_slot", row_slot, -1, num_slots)
    if segments is not None:
        seg_starts, seg_slot = segments
        first = int(seg_starts[0]) if seg_starts.numel() else 0
        require(
            first <= lead_rows,
            f"seg_starts[0] = {first}: rows before the segments must be at most lead_rows"
            f" = {lead_rows}",
        )
        require_offsets("seg_starts", seg_starts - first, num_rows - first)
        lengths = (seg_starts[1:] - seg_starts[:-1]).long()
        require(
            torch.equal(torch.repeat_interleave(seg_slot, lengths), row_slot[first:]),
            "segments disagree with row_slot: each run must hold rows of its seg_slot",
        )
