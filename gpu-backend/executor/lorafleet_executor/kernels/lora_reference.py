"""Plain torch LoRA shrink/expand over pool pages: the CPU path and the kernels' oracle.

Gathers each adapter's rows from their pages into dense fp32 matrices, one slot at a
time (bounded memory), and multiplies. Arguments are as in `lora.py`, already checked.
"""

import torch


def gather_rows(
    pool: torch.Tensor, pages: torch.Tensor, length: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """pages int32 [..., n] -> [..., length] in `dtype`: rows spread over n pages of width W."""
    rows = pool[pages.long()]  # [..., n, W]
    return rows.flatten(-2)[..., :length].to(dtype)


def lora_shrink_reference(
    x: torch.Tensor,
    pool: torch.Tensor,
    a_pages: torch.Tensor,
    ranks: torch.Tensor,
    row_slot: torch.Tensor,
) -> torch.Tensor:
    num_modules, num_slots, max_rank, _ = a_pages.shape
    num_rows, in_features = x.shape
    h = torch.zeros(num_modules, num_rows, max_rank, dtype=torch.float32, device=x.device)
    xf = x.float()
    for slot in range(num_slots):
        rows = (row_slot == slot).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        for m in range(num_modules):
            rank = int(ranks[m, slot])
            if rank == 0:
                continue
            a = gather_rows(pool, a_pages[m, slot, :rank], in_features)  # [r, in]
            h[m, rows, :rank] = xf[rows] @ a.T
    return h


def lora_expand_reference(
    y: torch.Tensor,
    h: torch.Tensor,
    pool: torch.Tensor,
    b_pages: torch.Tensor,
    ranks: torch.Tensor,
    row_slot: torch.Tensor,
    out_features: list[int],
) -> None:
    num_modules, num_slots, _, _ = b_pages.shape
    col = 0
    for m in range(num_modules):
        out = out_features[m]
        for slot in range(num_slots):
            rows = (row_slot == slot).nonzero().squeeze(1)
            rank = int(ranks[m, slot])
            if rows.numel() == 0 or rank == 0:
                continue
            bt = gather_rows(pool, b_pages[m, slot, :rank], out)  # [r, out]
            delta = h[m, rows, :rank] @ bt
            y[rows, col : col + out] = (y[rows, col : col + out].float() + delta).to(y.dtype)
        col += out
