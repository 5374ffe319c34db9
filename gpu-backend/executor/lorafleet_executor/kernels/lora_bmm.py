"""LoRA shrink/expand by gather-and-bmm: S-LoRA's "bmm" baseline, for decode rows.

Gathers every row's own A (and Bᵀ) from the pool into a padded dense batch, then one
batched matmul per module; no Python loop over adapters and no host-device sync, so it
runs inside CUDA graphs as our Triton kernels do. It costs T × R × in elements of
gather traffic per module (each row copies its adapter even when rows share one),
which is exactly what the paper's MBGMV kernel avoids. Prefill runs (segments) are
padded, in buckets of similar length, and multiplied one batched matmul per module and
group of runs, each run with its adapter gathered once (as the paper's bmm baseline
pads); groups are sized so the padded input stays near SEGMENT_BYTES. Arguments are as in
`lora.py`, already checked.
"""

import numpy as np
import torch

from .lora_reference import gather_rows

SEGMENT_BYTES = 256 * 2**20


def _rank_mask(ranks: torch.Tensor, slots: torch.Tensor, max_rank: int) -> torch.Tensor:
    """bool [M, n, R]: rank j of row (or run) i counts for module m; slot -1: none."""
    own_ranks = ranks[:, slots.clamp(min=0).long()]  # [M, n]
    within = torch.arange(max_rank, device=ranks.device) < own_ranks[..., None]
    return within & (slots >= 0)[None, :, None]


def _gather(pool: torch.Tensor, pages: torch.Tensor, row_slot: torch.Tensor, length: int):
    """pages [M, S, R, n] -> [M, T, R, length]: each row's adapter rows, in pool dtype."""
    return gather_rows(pool, pages[:, row_slot.clamp(min=0).long()], length, pool.dtype)


def lora_shrink_bmm(
    x: torch.Tensor,
    pool: torch.Tensor,
    a_pages: torch.Tensor,
    ranks: torch.Tensor,
    row_slot: torch.Tensor,
) -> torch.Tensor:
    """h[m, t, j] = x[t] · A_m,slot(t)[j] for j < rank, else 0; fp32 [M, T, R]."""
    num_modules, _, max_rank, _ = a_pages.shape
    num_rows, in_features = x.shape
    a = _gather(pool, a_pages, row_slot, in_features)  # [M, T, R, in]
    xs = x.to(pool.dtype).expand(num_modules, num_rows, in_features)
    h = torch.matmul(a.reshape(-1, max_rank, in_features), xs.reshape(-1, in_features, 1))
    h = h.reshape(num_modules, num_rows, max_rank).float()
    # where(), not a product: padded entries past a rank point at pages holding anything
    # (KV, other adapters), and 0 * inf is NaN.
    return torch.where(_rank_mask(ranks, row_slot, max_rank), h, 0.0)


def lora_expand_bmm(
    y: torch.Tensor,
    h: torch.Tensor,
    pool: torch.Tensor,
    b_pages: torch.Tensor,
    ranks: torch.Tensor,
    row_slot: torch.Tensor,
    out_features: list[int],
) -> None:
    """y[t, cols_m] += h[m, t, :r] @ Bᵀ_m,slot(t)[:r, :out_m], in place."""
    mask = _rank_mask(ranks, row_slot, h.shape[2])
    hm = torch.where(mask, h, 0.0).to(pool.dtype)
    col = 0
    for m, out in enumerate(out_features):
        bt = _gather(pool, b_pages[m : m + 1], row_slot, out)[0]  # [T, R, out]
        bt = torch.where(mask[m, :, :, None], bt, 0.0)
        delta = torch.bmm(hm[m].unsqueeze(1), bt).squeeze(1)  # [T, out]
        y[:, col : col + out] += delta.to(y.dtype)
        col += out


def lora_shrink_bmm_segments(x, pool, a_pages, ranks, segments, run_lengths) -> torch.Tensor:
    """h as lora_shrink_bmm, for rows in runs on one slot each; fp32 [M, T, R]."""
    num_modules, _, max_rank, _ = a_pages.shape
    num_rows, in_features = x.shape
    h = torch.zeros(num_rows, num_modules, max_rank, dtype=torch.float32, device=x.device)
    for rows, valid, slot in _run_groups(segments, run_lengths, in_features, x):
        a = gather_rows(pool, a_pages[:, slot.clamp(min=0).long()], in_features, pool.dtype)
        xs = x.to(pool.dtype)[rows]  # [n, L, in]
        hs = torch.matmul(xs.unsqueeze(0), a.transpose(-1, -2)).float()  # [M, n, L, R]
        keep = _rank_mask(ranks, slot, max_rank)[:, :, None, :] & valid[None, :, :, None]
        hs = torch.where(keep, hs, 0.0)
        h.index_put_((rows.reshape(-1),), hs.reshape(num_modules, -1, max_rank).transpose(0, 1),
                     accumulate=True)  # fmt: skip
    return h.transpose(0, 1)


def lora_expand_bmm_segments(
    y, h, pool, b_pages, ranks, segments, run_lengths, out_features
) -> None:
    """y += h @ Bᵀ as lora_expand_bmm, for rows in runs on one slot each, in place."""
    max_rank = h.shape[2]
    col = 0
    for m, out in enumerate(out_features):
        for rows, valid, slot in _run_groups(segments, run_lengths, out, y):
            bt = gather_rows(pool, b_pages[m, slot.clamp(min=0).long()], out, pool.dtype)
            keep = _rank_mask(ranks[m : m + 1], slot, max_rank)[0]  # [n, R]
            bt = torch.where(keep[:, :, None], bt, 0.0)  # [n, R, out]
            hs = torch.where(valid[:, :, None], h[m][rows], 0.0).to(pool.dtype)  # [n, L, R]
            delta = torch.bmm(hs, bt).to(y.dtype)  # [n, L, out]
            y[:, col : col + out].index_put_((rows.reshape(-1),), delta.reshape(-1, out),
                                             accumulate=True)  # fmt: skip
        col += out


def _run_groups(segments, run_lengths, width: int, like: torch.Tensor):
    """Yields (rows int64 [n, L], valid bool [n, L], slot int32 [n]) for groups of runs of
    similar length: runs are bucketed by their length's next power of two and padded to
    it (at most 2x the rows; one long prefill chunk no longer pads every one-row decode
    run to its length). Padding rows point at row 0 and are masked. Without host
    `run_lengths` every run is padded to T."""
    starts, seg_slot = segments
    num_runs = seg_slot.shape[0]
    if run_lengths is None:
        buckets = {like.shape[0]: list(range(num_runs))}
    else:
        buckets: dict[int, list[int]] = {}
        for run, length in enumerate(np.asarray(run_lengths).tolist()):
            buckets.setdefault(1 << max(0, int(length) - 1).bit_length(), []).append(run)
    for padded, runs in sorted(buckets.items()):
        per_group = max(1, SEGMENT_BYTES // max(1, padded * width * like.element_size()))
        offsets = torch.arange(padded, device=starts.device)
        for first in range(0, len(runs), per_group):
            index = np.asarray(runs[first : first + per_group], np.int64)
            index = torch.from_numpy(index).to(starts.device, non_blocking=True)
            rows = starts[index, None].long() + offsets
            valid = rows < starts[index + 1, None]
            yield torch.where(valid, rows, 0), valid, seg_slot[index]
