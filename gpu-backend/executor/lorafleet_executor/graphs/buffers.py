"""Captured CUDA graphs of forward passes and their static inputs: a step's values are
copied into the front of fixed buffers before a replay, and the rest is padding nobody
reads.

Example:
    lora = StaticLora(cfg.module_shapes(), page_width, device, num_slots=256, max_rank=64,
                      num_rows=2048)
    lora.fill(inputs.slots, inputs.row_slot)
    fill(token_ids, inputs.token_ids, pad=0)
"""

from collections.abc import Callable

import numpy as np
import torch

from ..model.lora_batch import (
    LoraBatch,
    PlacedAdapter,
    build_lora_batch,
    group_tables,
    targeted_groups,
)
from ..model.pool import UnifiedPool
from ..step.inputs import StepInputs
from ..step.sequences import SequenceTable


def capture(
    forward: Callable[[], torch.Tensor], memory_pool: tuple
) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """(graph, its output) of `forward` over static buffers.

    Warms up first: Triton compiles on the first launch, which a capture cannot hold. The
    warm-up computes what the graph will: K/V writes are the same values twice.
    """
    forward()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    # thread_local: an adapter load on the side stream may run in another thread.
    with torch.cuda.graph(graph, pool=memory_pool, capture_error_mode="thread_local"):
        output = forward()
    return graph, output


def buffer(n: int, dtype: torch.dtype, device: torch.device, pad: int = 0) -> torch.Tensor:
    """A static input of n entries, all padding to start with."""
    return torch.full((n,), pad, dtype=dtype, device=device)


def fill(static: torch.Tensor, values: np.ndarray, pad: int) -> None:
    n = len(values)
    static[:n].copy_(torch.from_numpy(values), non_blocking=True)
    static[n:].fill_(pad)


class StaticTokens:
    """A step's new tokens in static buffers of `size` rows: ids, positions and the pages
    their K and V go to (the padding rows' to the scratch page)."""

    def __init__(self, size: int, pool: UnifiedPool) -> None:
        device, self.scratch_page = pool.data.device, pool.scratch_page
        self.token_ids = buffer(size, torch.int64, device)
        self.positions = buffer(size, torch.int64, device)
        self.k_pages = buffer(size, torch.int32, device, pool.scratch_page)
        self.v_pages = buffer(size, torch.int32, device, pool.scratch_page)

    def fill(self, inputs: StepInputs, seqs: SequenceTable) -> None:
        """Writes the new tokens' pages into the page tables and the step into the buffers."""
        seqs.write_pages(inputs.table_rows, inputs.positions, inputs.k_pages, inputs.v_pages)
        fill(self.token_ids, inputs.token_ids, 0)
        if inputs.late is not None:
            inputs.late.write(self.token_ids)
        fill(self.positions, inputs.positions, 0)
        fill(self.k_pages, inputs.k_pages, self.scratch_page)
        fill(self.v_pages, inputs.v_pages, self.scratch_page)

    def first(self, rows: int) -> dict[str, torch.Tensor]:
        """The ForwardBatch fields of the first `rows` rows."""
        return {
            "token_ids": self.token_ids[:rows],
            "positions": self.positions[:rows],
            "k_pages": self.k_pages[:rows],
            "v_pages": self.v_pages[:rows],
        }


class StaticLora:
    """LoRA page tables padded to (num_slots, max_rank) and a row_slot of num_rows."""

    def __init__(
        self,
        shapes: dict[str, tuple[int, int]],
        page_width: int,
        device: torch.device,
        num_slots: int,
        max_rank: int,
        num_rows: int,
    ) -> None:
        self.shapes, self.page_width = shapes, page_width
        self.batch: LoraBatch = build_lora_batch(
            [],
            np.full(num_rows, -1, np.int32),
            None,
            shapes,
            page_width,
            device,
            num_slots=num_slots,
            max_rank=max_rank,
        )

    def fill(self, slots: list[PlacedAdapter], row_slot: np.ndarray) -> None:
        """Copies this step's tables into the front of the static ones.

        Only slots < len(slots) are named by row_slot and only rank rows < rank are read,
        so what lies beyond from earlier steps is never used.
        """
        fill(self.batch.row_slot, row_slot, -1)
        if not slots:
            return
        n, rank = len(slots), max(a.rank for a in slots)
        targeted = targeted_groups(slots)
        for name, static in self.batch.groups.items():
            if name not in targeted:
                static.ranks[:, :n] = 0
                continue
            a_pages, b_pages, ranks = group_tables(
                slots, name, self.shapes, self.page_width, n, rank
            )
            # straight from the host into the static tables' front
            static.a_pages[:, :n, :rank].copy_(torch.from_numpy(a_pages), non_blocking=True)
            static.b_pages[:, :n, :rank].copy_(torch.from_numpy(b_pages), non_blocking=True)
            static.ranks[:, :n].copy_(torch.from_numpy(ranks), non_blocking=True)
