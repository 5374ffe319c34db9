"""Per-step LoRA metadata: which slot each token row uses and each slot's page tables.

Built once per step and reused by every layer: a page id names the same row in every
layer's pool tensor, so the tables do not depend on the layer. Modules are grouped as
the base GEMMs are fused: (q, k, v), (o), (gate, up), (down).

Example:
    made = pack_lora_batch([placed_a, placed_b], row_slot, None, cfg.module_shapes(),
                           cfg.page_width, packing)
    lora = made(upload.send(packing))
    lora.groups["qkv"].a_pages.shape  # [3, 2, rank, ceil(hidden / W)]
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .adapter_layout import ModuleSpan, pages_per_row
from .upload import Packing, Uploaded

GROUPS = {"qkv": ("q", "k", "v"), "o": ("o",), "gate_up": ("gate", "up"), "down": ("down",)}


@dataclass(frozen=True)
class PlacedAdapter:
    """An adapter resident in the pool: its rows' layout and the pages the engine gave it."""

    adapter_id: int
    rank: int
    spans: dict[str, ModuleSpan]
    pages: np.ndarray  # int32 [num_pages]


@dataclass
class LoraGroup:
    a_pages: torch.Tensor  # int32 [M, S, R, ceil(in / W)]
    b_pages: torch.Tensor  # int32 [M, S, R, ceil(max(out) / W)]
    ranks: torch.Tensor  # int32 [M, S]; 0 where the slot's adapter skips the module
    out_features: list[int]  # [M]


@dataclass
class LoraBatch:
    row_slot: torch.Tensor  # int32 [T]; -1 = base model only
    segments: tuple[torch.Tensor, torch.Tensor] | None  # (starts int32 [n+1], slot int32 [n])
    run_lengths: np.ndarray | None  # int [n], the runs' lengths on the host (grids, no sync)
    groups: dict[str, LoraGroup | None]  # None: no slot targets any module of the group
    lead_rows: int = 0  # rows before the segments (one-token seqs), or a bound of them


def pack_lora_batch(
    slots: list[PlacedAdapter],
    row_slot: np.ndarray,
    segments: tuple[np.ndarray, np.ndarray] | None,
    shapes: dict[str, tuple[int, int]],
    page_width: int,
    packing: Packing,
    max_rank: int | None = None,
    lead_rows: int = 0,
) -> Callable[[Uploaded], LoraBatch]:
    """The step's tables into `packing`; the result makes the batch from the upload.
    `max_rank` pads the rank dimension (it keeps the kernels' rank constexpr fixed); by
    default it is this step's largest. Groups no slot targets are left out."""
    targeted = targeted_groups(slots)
    rank = max_rank or max(a.rank for a in slots)
    tables = {
        name: [
            packing.add(t) for t in group_tables(slots, name, shapes, page_width, len(slots), rank)
        ]
        for name in GROUPS
        if name in targeted
    }
    row_slot_at = packing.add(row_slot)
    segments_at = None if segments is None else (packing.add(segments[0]), packing.add(segments[1]))

    def made(sent: Uploaded) -> LoraBatch:
        groups: dict[str, LoraGroup | None] = dict.fromkeys(GROUPS)
        for name, (a_pages, b_pages, ranks) in tables.items():
            groups[name] = LoraGroup(
                a_pages=sent[a_pages],
                b_pages=sent[b_pages],
                ranks=sent[ranks],
                out_features=[shapes[m][1] for m in GROUPS[name]],
            )
        return LoraBatch(
            row_slot=sent[row_slot_at],
            segments=None if segments_at is None else (sent[segments_at[0]], sent[segments_at[1]]),
            groups=groups,
            run_lengths=None if segments is None else np.diff(segments[0]),
            lead_rows=lead_rows,
        )

    return made


def targeted_groups(slots: list[PlacedAdapter]) -> frozenset[str]:
    """The groups (names of GROUPS) some slot's adapter targets a module of."""
    return frozenset(
        name
        for name, modules in GROUPS.items()
        if any(m in a.spans for a in slots for m in modules)
    )


def group_tables(
    slots: list[PlacedAdapter],
    group: str,
    shapes: dict[str, tuple[int, int]],
    page_width: int,
    num_slots: int,
    rank: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One group's page tables on the host: a_pages int32 [M, S, R, ceil(in / W)], b_pages
    int32 [M, S, R, ceil(max(out) / W)] and ranks int32 [M, S], S = num_slots, R = rank."""
    modules = GROUPS[group]
    outs = [shapes[m][1] for m in modules]
    in_pages = pages_per_row(shapes[modules[0]][0], page_width)
    a_pages = np.zeros((len(modules), num_slots, rank, in_pages), np.int32)
    b_pages = np.zeros(
        (len(modules), num_slots, rank, pages_per_row(max(outs), page_width)), np.int32
    )
    ranks = np.zeros((len(modules), num_slots), np.int32)
    for s, adapter in enumerate(slots):
        for m, module in enumerate(modules):
            span = adapter.spans.get(module)
            if span is None:
                continue
            ranks[m, s] = span.rank
            a_pages[m, s, : span.rank] = span.a_pages(adapter.pages)
            b_pages[m, s, : span.rank, : span.b_row_pages] = span.b_pages(adapter.pages)
    return a_pages, b_pages, ranks


def mixed_segments(
    row_slot: np.ndarray, cu_q: np.ndarray
) -> tuple[int, tuple[np.ndarray, np.ndarray]]:
    """(lead rows, segments of the rest) of a step with prefill chunks: the rows of the
    leading one-token sequences (the scheduler puts running decodes first) go one per
    program, as in decode steps; the rest go by runs of one slot.

    >>> mixed_segments(np.array([0, 1, 1, 1, -1], np.int32), np.array([0, 1, 2, 4, 5]))
    (2, (array([2, 4, 5], dtype=int32), array([ 1, -1], dtype=int32)))
    """
    several = np.flatnonzero(np.diff(cu_q) > 1)
    lead = int(cu_q[several[0]]) if len(several) else len(row_slot)
    starts, slots = slot_runs(row_slot[lead:])
    return lead, ((starts + lead).astype(np.int32), slots)


def slot_runs(row_slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of consecutive rows sharing a slot: (starts int32 [n+1], slot int32 [n]).

    >>> slot_runs(np.array([0, 0, -1, 1, 1], np.int32))
    (array([0, 2, 3, 5], dtype=int32), array([ 0, -1,  1], dtype=int32))
    """
    change = np.flatnonzero(np.diff(row_slot)) + 1
    starts = np.concatenate([[0], change, [len(row_slot)]]).astype(np.int32)
    return starts, row_slot[starts[:-1]].astype(np.int32)
