"""LoRA shrink/expand by gather-and-bmm: S-LoRA's "bmm" baseline, for decode rows.

Gathers every row's own A (and Bᵀ) from the pool into a padded dense batch, then one
batched matmul per module; no Python loop over adapters and no host-device sync, so it
runs inside CUDA graphs as our Triton kernels do. It costs T × R × in elements of
gather traffic per module (each row copies its adapter even when rows share one),
which is exactly what the paper's MBGMV kernel avoids. Prefill (segments) keeps the
per-slot reference. Arguments are as in `lora.py`, already checked.
"""

import torch

from .lora_reference import gather_rows


def _rank_mask(ranks: torch.Tensor, row_slot: torch.Tensor, max_rank: int) -> torch.Tensor:
    """bool [M, T, R]: rank j of row t counts for module m."""
    slot = row_slot.clamp(min=0).long()
    row_ranks = ranks[:, slot]  # [M, T]
    within = torch.arange(max_rank, device=ranks.device) < row_ranks[..., None]
    return within & (row_slot >= 0)[None, :, None]


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
