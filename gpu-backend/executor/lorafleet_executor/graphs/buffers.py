"""Captured CUDA graphs of forward passes and their static inputs. A graph reads fixed
buffers, so a step's values go into them before a replay: the 1-D inputs are typed views
of one device arena laid out as the step's upload lays them out (model/upload.py), so
the step's values, padded on the host, fill all of them with one device-to-device copy
from the upload; the step's LoRA tables go into the front of padded static ones. What
lies past a step's values is padding nobody reads. One copy, not one per buffer: for a
decode step's 7 buffers the host spent 49 us on the arena against 99 us padding each on
the host and copying it on its own, and 58 us before (a pageable copy and a fill_ each),
on the CPU, where a copy costs no driver staging or launch (git 9e537b0).

Example:
    arena = StaticArena({**token_fields(256, pool.scratch_page)}, device)
    fill = arena.pack(packing, token_values(inputs))
    fill(upload.send(packing))  # arena.views["token_ids"]: the step's ids, then zeros
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..model.lora_batch import GROUPS, LoraGroup, PlacedAdapter, group_tables, targeted_groups
from ..model.pool import UnifiedPool
from ..model.upload import Packing, Uploaded
from ..step.inputs import StepInputs


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


@dataclass(frozen=True)
class Field:
    """A static 1-D input: `size` entries of a numpy `dtype`, `pad` past a step's values."""

    dtype: type
    size: int
    pad: int = 0


class StaticArena:
    """Static 1-D inputs as views of one device buffer. Both the arena and a step's slots
    of it are laid out by Packing from an aligned start, field by field in the same
    order, so the step's bytes are the arena's."""

    def __init__(self, fields: dict[str, Field], device: torch.device) -> None:
        self.fields = fields
        layout = Packing()
        slots = [layout.add(np.empty(0, f.dtype), f.size, f.pad) for f in fields.values()]
        self.offsets = [s.offset for s in slots]
        self.data = torch.empty(layout.nbytes, dtype=torch.uint8, device=device)
        at = Uploaded(self.data)
        self.views = {name: at[slot] for name, slot in zip(fields, slots, strict=True)}
        for name, f in fields.items():  # graphs captured before any step read valid padding
            self.views[name].fill_(f.pad)

    def pack(
        self, packing: Packing, values: dict[str, np.ndarray], pads: dict[str, int] | None = None
    ) -> Callable[[Uploaded], None]:
        """Every field's values (padded with its pad, or `pads`' for this step) into
        `packing`; the result copies them into the arena from the upload."""
        pads = pads or {}
        slots = [
            packing.add(np.asarray(values[name], f.dtype), f.size, pads.get(name, f.pad))
            for name, f in self.fields.items()
        ]
        base = slots[0].offset
        assert [s.offset - base for s in slots] == self.offsets
        end = base + self.data.numel()
        return lambda sent: self.data.copy_(sent.data[base:end])


def token_fields(size: int, scratch_page: int) -> dict[str, Field]:
    """A step's new tokens in `size` rows: ids, positions, the pages their K and V go to
    (the padding rows' to the scratch page) and their adapter slots (-1: none)."""
    return {
        "token_ids": Field(np.int64, size),
        "positions": Field(np.int64, size),
        "k_pages": Field(np.int32, size, scratch_page),
        "v_pages": Field(np.int32, size, scratch_page),
        "row_slot": Field(np.int32, size, -1),
    }


def token_values(inputs: StepInputs) -> dict[str, np.ndarray]:
    return {name: getattr(inputs, name) for name in token_fields(0, 0)}


class StaticLora:
    """LoRA page tables padded to (num_slots, max_rank)."""

    def __init__(
        self,
        shapes: dict[str, tuple[int, int]],
        page_width: int,
        device: torch.device,
        num_slots: int,
        max_rank: int,
    ) -> None:
        self.shapes, self.page_width = shapes, page_width
        self.groups = {}
        for name in GROUPS:
            tables = group_tables([], name, shapes, page_width, num_slots, max_rank)
            self.groups[name] = LoraGroup(
                *(torch.from_numpy(t).to(device) for t in tables),
                out_features=[shapes[m][1] for m in GROUPS[name]],
            )

    def pack(self, slots: list[PlacedAdapter], packing: Packing) -> Callable[[Uploaded], None]:
        """This step's tables into `packing`; the result copies them into the front of the
        static ones. Only slots < len(slots) are named by row_slot and only rank rows <
        rank are read, so what lies beyond from earlier steps is never used."""
        if not slots:
            return lambda sent: None
        n, rank = len(slots), max(a.rank for a in slots)
        tables = {
            name: [
                packing.add(t)
                for t in group_tables(slots, name, self.shapes, self.page_width, n, rank)
            ]
            for name in targeted_groups(slots)
        }

        def fill(sent: Uploaded) -> None:
            for name, static in self.groups.items():
                if name not in tables:
                    static.ranks[:, :n] = 0
                    continue
                a_pages, b_pages, ranks = tables[name]
                static.a_pages[:, :n, :rank].copy_(sent[a_pages])
                static.b_pages[:, :n, :rank].copy_(sent[b_pages])
                static.ranks[:, :n].copy_(sent[ranks])

        return fill


class StaticInputs:
    """All of a graph's static inputs: the arena of `fields` and the LoRA tables of up to
    `num_slots` adapters of rank up to `max_rank`."""

    def __init__(
        self,
        fields: dict[str, Field],
        shapes: dict[str, tuple[int, int]],
        pool: UnifiedPool,
        num_slots: int,
        max_rank: int,
    ) -> None:
        device = pool.data.device
        self.arena = StaticArena(fields, device)
        self.views = self.arena.views
        self.lora = StaticLora(shapes, pool.page_width, device, num_slots, max_rank)

    def pack(
        self,
        inputs: StepInputs,
        packing: Packing,
        values: dict[str, np.ndarray],
        pads: dict[str, int] | None = None,
    ) -> Callable[[Uploaded], None]:
        """`values` (StaticArena.pack), the step's LoRA tables and its late tokens into
        `packing`; the result fills the static buffers from the upload."""
        fill = self.arena.pack(packing, values, pads)
        fill_lora = self.lora.pack(inputs.slots, packing)
        late = None if inputs.late is None else inputs.late.pack(packing)

        def filled(sent: Uploaded) -> None:
            fill(sent)
            fill_lora(sent)
            if late is not None:  # the sampled tokens of the step before, read on the device
                late(sent, self.views["token_ids"])

        return filled
