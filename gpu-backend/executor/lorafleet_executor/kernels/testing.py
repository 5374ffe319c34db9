"""Builders of pools holding adapters and KV at shuffled, non-contiguous pages (PROTOCOL.md).

Shared by the kernel tests, the model tests and the kernel benchmarks, so that all of
them exercise the one page layout the executor's loader writes:

- adapter: per targeted module in canonical order, the r rows of A (`in` long), then
  the r rows of Bᵀ (`out` long, scaled); a row of length L takes ceil(L/W) consecutive
  entries of the adapter's page list; the tail of a row's last page is zero.
- KV: each token takes one K page and one V page per layer, head-major (h*D + d).

Pages nobody owns are filled with NaN, so a kernel that reads a wrong page fails loudly.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

SPREADS = ("identical", "distinct", "zipf", "skewed")


def pages_per_row(length: int, page_width: int) -> int:
    return -(-length // page_width)


def adapter_page_count(rank: int, shapes: Sequence[tuple[int, int]], page_width: int) -> int:
    """Pages an adapter of this rank needs for its targets' (in, out) shapes."""
    return sum(
        rank * (pages_per_row(i, page_width) + pages_per_row(o, page_width)) for i, o in shapes
    )


@dataclass
class ModulePages:
    """Page tables of one module of one adapter, as the kernels' page tables hold them."""

    a: torch.Tensor  # int32 [r, ceil(in/W)]
    bt: torch.Tensor  # int32 [r, ceil(out/W)]


def write_adapter(
    pool: torch.Tensor,
    pages: torch.Tensor,
    modules: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    tail_fill: float = 0.0,
) -> list[ModulePages]:
    """Write an adapter's weights into `pages` of pool [P, W] in PROTOCOL.md's order.

    modules: per targeted module in canonical order, (A [r, in], Bᵀ [r, out] already
    scaled). `pages` must hold exactly adapter_page_count(...) ids. `tail_fill` is what
    pads a row's last page (the protocol says zero; tests use NaN to catch overreads).
    """
    page_width = pool.shape[1]
    shapes = [(a.shape[1], bt.shape[1]) for a, bt in modules]
    ranks = {a.shape[0] for a, _ in modules} | {bt.shape[0] for _, bt in modules}
    if len(ranks) != 1:
        raise ValueError(f"all A and Bᵀ of one adapter must share a rank, got {sorted(ranks)}")
    need = adapter_page_count(ranks.pop(), shapes, page_width)
    if pages.numel() != need:
        raise ValueError(f"adapter needs {need} pages, got {pages.numel()}")
    cursor = 0

    def place(rows: torch.Tensor) -> torch.Tensor:
        nonlocal cursor
        r, length = rows.shape
        per_row = pages_per_row(length, page_width)
        ids = pages[cursor : cursor + r * per_row].reshape(r, per_row).to(torch.int32)
        cursor += r * per_row
        padded = torch.full((r, per_row * page_width), tail_fill, dtype=pool.dtype)
        padded[:, :length] = rows.to(pool.dtype)
        pool[ids.long().to(pool.device)] = padded.reshape(r, per_row, page_width).to(pool.device)
        return ids

    return [ModulePages(a=place(a), bt=place(bt)) for a, bt in modules]


def row_slots(spread: str, num_rows: int, num_slots: int, generator: torch.Generator):
    """Adapter slot of each row, punica's spreads: identical, distinct, zipf, skewed."""
    if spread == "identical":
        return torch.zeros(num_rows, dtype=torch.int32)
    if spread == "distinct":
        return (torch.arange(num_rows) % num_slots).to(torch.int32)
    if spread == "zipf":
        weights = 1.0 / torch.arange(1, num_slots + 1, dtype=torch.float64)
        return torch.multinomial(weights, num_rows, replacement=True, generator=generator).int()
    if spread == "skewed":
        # Half the rows on one adapter, the rest spread: the case that found a punica deadlock.
        rest = torch.randint(0, num_slots, (num_rows,), generator=generator)
        return torch.where(torch.arange(num_rows) < (num_rows + 1) // 2, 0, rest).int()
    raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}")


def runs_of(row_slot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(seg_starts int32 [n+1], seg_slot int32 [n]) of the runs of equal consecutive slots."""
    values, counts = torch.unique_consecutive(row_slot, return_counts=True)
    starts = torch.zeros(values.numel() + 1, dtype=torch.int32)
    starts[1:] = counts.cumsum(0)
    return starts, values.to(torch.int32)


@dataclass
class LoraBatch:
    x: torch.Tensor  # [T, in]
    pool: torch.Tensor  # [P, W]
    a_pages: torch.Tensor  # int32 [M, S, R, ceil(in/W)]
    b_pages: torch.Tensor  # int32 [M, S, R, ceil(max(out)/W)]
    ranks: torch.Tensor  # int32 [M, S]
    row_slot: torch.Tensor  # int32 [T]
    segments: tuple[torch.Tensor, torch.Tensor] | None
    out_features: list[int]
    a: list[list[torch.Tensor | None]]  # [m][s]: dense fp32 A [r, in] as stored (rounded)
    bt: list[list[torch.Tensor | None]]  # [m][s]: dense fp32 Bᵀ [r, out] as stored
    lead_rows: int = 0  # rows before the segments, one per program (a mixed step's decodes)

    def lead_by_rows(self, lead_rows: int) -> None:
        """Makes the first lead_rows rows single rows and the rest segments (runs)."""
        starts, slots = runs_of(self.row_slot[lead_rows:].cpu())
        device = self.row_slot.device
        self.segments = ((starts + lead_rows).to(device), slots.to(device))
        self.lead_rows = lead_rows

    def dense_delta(self) -> torch.Tensor:
        """fp32 [T, sum(out)]: Σ_m x @ A_mᵀ @ Bᵀ_m per row, from dense weights (no pages)."""
        num_rows = self.x.shape[0]
        delta = torch.zeros(num_rows, sum(self.out_features), dtype=torch.float64)
        x = self.x.cpu().double()
        slots = self.row_slot.cpu()
        col = 0
        for m, out in enumerate(self.out_features):
            for t in range(num_rows):
                s = int(slots[t])
                if s >= 0 and self.a[m][s] is not None:
                    h = self.a[m][s].double() @ x[t]
                    delta[t, col : col + out] = h @ self.bt[m][s].double()
            col += out
        return delta.float()


def make_lora_batch(
    *,
    num_rows: int,
    in_features: int,
    out_features: Sequence[int],
    slot_ranks: Sequence[int],
    page_width: int,
    spread: str = "distinct",
    no_adapter_every: int = 0,
    untargeted: Sequence[tuple[int, int]] = (),
    prefill: bool = False,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> LoraBatch:
    """A random batch of rows over adapters written at shuffled pages of a fresh pool.

    slot_ranks[s] is slot s's adapter rank; `untargeted` lists (module, slot) pairs the
    adapter does not target (rank 0 there, no pages). Every `no_adapter_every`-th row
    has no adapter. With `prefill`, rows are sorted into runs and `segments` is set.
    """
    gen = torch.Generator().manual_seed(seed)
    out_features = [int(o) for o in out_features]
    num_modules, num_slots = len(out_features), len(slot_ranks)
    max_rank = max(slot_ranks)
    ranks = torch.tensor([list(slot_ranks)] * num_modules, dtype=torch.int32)
    for m, s in untargeted:
        ranks[m, s] = 0
    weights: list[list[tuple[torch.Tensor, torch.Tensor] | None]] = []
    for m, out in enumerate(out_features):
        weights.append([])
        for s in range(num_slots):
            r = int(ranks[m, s])
            if r == 0:
                weights[m].append(None)
                continue
            a = torch.randn(r, in_features, generator=gen) / in_features**0.5
            bt = torch.randn(r, out, generator=gen) / r**0.5
            weights[m].append((a.to(dtype).float(), bt.to(dtype).float()))
    per_slot = [
        adapter_page_count(
            int(slot_ranks[s]),
            [(in_features, out_features[m]) for m in range(num_modules) if ranks[m, s] > 0],
            page_width,
        )
        for s in range(num_slots)
    ]
    num_pages = sum(per_slot) + 8
    pool = torch.full((num_pages, page_width), float("nan"), dtype=dtype)
    order = torch.randperm(num_pages, generator=gen)
    a_pages = torch.zeros(
        num_modules, num_slots, max_rank, pages_per_row(in_features, page_width), dtype=torch.int32
    )
    b_pages = torch.zeros(
        num_modules,
        num_slots,
        max_rank,
        pages_per_row(max(out_features), page_width),
        dtype=torch.int32,
    )
    first = 0
    for s in range(num_slots):
        targets = [m for m in range(num_modules) if weights[m][s] is not None]
        placed = write_adapter(
            pool,
            order[first : first + per_slot[s]],
            [weights[m][s] for m in targets],
            tail_fill=float("nan"),
        )
        first += per_slot[s]
        for m, module_pages in zip(targets, placed, strict=True):
            r, na = module_pages.a.shape
            a_pages[m, s, :r, :na] = module_pages.a
            b_pages[m, s, :r, : module_pages.bt.shape[1]] = module_pages.bt
    slots = row_slots(spread, num_rows, num_slots, gen)
    if no_adapter_every:
        slots[::no_adapter_every] = -1
    segments = None
    if prefill:
        slots = slots.sort(stable=True).values
        segments = tuple(t.to(device) for t in runs_of(slots))
    x = torch.randn(num_rows, in_features, generator=gen).to(dtype)
    return LoraBatch(
        x=x.to(device),
        pool=pool.to(device),
        a_pages=a_pages.to(device),
        b_pages=b_pages.to(device),
        ranks=ranks.to(device),
        row_slot=slots.to(device),
        segments=segments,
        out_features=out_features,
        a=[[w[0] if w else None for w in row] for row in weights],
        bt=[[w[1] if w else None for w in row] for row in weights],
    )


@dataclass
class PagedKV:
    pool: torch.Tensor  # [P, W], W = Hkv * D
    k_table: torch.Tensor  # int32 [B, max_ctx]
    v_table: torch.Tensor  # int32 [B, max_ctx]
    ctx_lens: torch.Tensor  # int32 [B]
    keys: list[torch.Tensor]  # per seq [ctx, Hkv, D] as stored (dtype)
    values: list[torch.Tensor]


def make_paged_kv(
    ctx_lens: Sequence[int],
    num_kv_heads: int,
    head_dim: int,
    *,
    table_width: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> PagedKV:
    """Each token's K and V of every sequence at shuffled pages; unused pages NaN."""
    gen = torch.Generator().manual_seed(seed)
    width = num_kv_heads * head_dim
    total = sum(ctx_lens)
    num_pages = 2 * total + 8
    pool = torch.full((num_pages, width), float("nan"), dtype=dtype)
    order = torch.randperm(num_pages, generator=gen).to(torch.int32)
    table_width = table_width or max(ctx_lens)
    k_table = torch.zeros(len(ctx_lens), table_width, dtype=torch.int32)
    v_table = torch.zeros_like(k_table)
    keys, values = [], []
    first = 0
    for b, n in enumerate(ctx_lens):
        k = torch.randn(n, num_kv_heads, head_dim, generator=gen).to(dtype)
        v = torch.randn(n, num_kv_heads, head_dim, generator=gen).to(dtype)
        k_table[b, :n] = order[first : first + n]
        v_table[b, :n] = order[first + n : first + 2 * n]
        first += 2 * n
        pool[k_table[b, :n].long()] = k.reshape(n, width)
        pool[v_table[b, :n].long()] = v.reshape(n, width)
        keys.append(k)
        values.append(v)
    return PagedKV(
        pool=pool.to(device),
        k_table=k_table.to(device),
        v_table=v_table.to(device),
        ctx_lens=torch.tensor(list(ctx_lens), dtype=torch.int32, device=device),
        keys=keys,
        values=values,
    )
