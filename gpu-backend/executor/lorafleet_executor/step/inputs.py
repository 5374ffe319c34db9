"""A checked step plan turned into the host arrays of one forward pass.

Resolves `use_last_sampled` tokens, positions, slots of the adapters in the step and
which rows sample. Pure numpy: the device side is `pack_forward_batch` (the eager step's
inputs in the step's one upload, model/upload.py).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..model.forward_batch import ForwardBatch
from ..model.lora_batch import PlacedAdapter, mixed_segments, pack_lora_batch
from ..model.upload import Packing, Uploaded
from ..protocol.messages import FLAG_NEW, FLAG_SAMPLE, FLAG_USE_LAST_SAMPLED, StepPlan
from .sequences import PageWrites, SequenceState, SequenceTable


@dataclass
class StepInputs:
    token_ids: np.ndarray  # int64 [T], -1 entries resolved
    positions: np.ndarray  # int64 [T]
    k_pages: np.ndarray  # int32 [T]
    v_pages: np.ndarray  # int32 [T]
    seq_rows: np.ndarray  # int64 [B]
    cu_q: np.ndarray  # int32 [B + 1]
    ctx_lens: np.ndarray  # int32 [B]
    sample_seqs: np.ndarray  # int64 [N]: which seqs of the step sample
    logits_rows: np.ndarray  # int64 [N]: their last token's row
    row_slot: np.ndarray  # int32 [T], -1 = base model
    slots: list[PlacedAdapter]  # the adapters of the step, by slot
    page_writes: PageWrites  # the new sequences' cached prefixes' pages, then the new tokens'
    late: "LateTokens | None" = None  # use_last_sampled tokens still on the device

    @property
    def max_q(self) -> int:
        return int(np.diff(self.cu_q).max(initial=0))


@dataclass
class LateTokens:
    """Tokens of a step that were sampled by the step before it and are not back on the
    host yet: token_ids[at] = source[rows], written on the device before the forward."""

    at: np.ndarray  # int64 [L]: rows of the step's token_ids
    step: Any  # the earlier LaunchedStep; its `tokens`: int64 [N] on the device
    rows: np.ndarray  # int64 [L]: rows of those

    def pack(self, packing: Packing) -> Callable[[Uploaded, torch.Tensor], None]:
        """`at` and `rows` into `packing`; the result writes the tokens into a step's
        token_ids on the device."""
        at, rows = packing.add(self.at), packing.add(self.rows)

        def write(sent: Uploaded, token_ids: torch.Tensor) -> None:
            token_ids[sent[at]] = self.step.tokens[sent[rows]]

        return write


def step_inputs(
    plan: StepPlan, seqs: list[SequenceState], placed: dict[int, PlacedAdapter]
) -> StepInputs:
    """Every late token (SequenceState.late) must come from one step: the executor waits
    for older ones before it launches."""
    new = plan.num_new_tokens.astype(np.int64)
    cu_q = np.concatenate([[0], np.cumsum(new)]).astype(np.int32)
    starts = cu_q[:-1].astype(np.int64)
    token_ids = plan.token_ids.astype(np.int64)
    late_at, late_rows, late_step = [], [], None
    for i in np.flatnonzero(plan.flags & FLAG_USE_LAST_SAMPLED):
        if seqs[i].late is None:
            token_ids[starts[i]] = seqs[i].last_sampled
            continue
        step, row = seqs[i].late
        assert late_step in (None, step), "late tokens of two steps"
        late_step, token_ids[starts[i]] = step, 0
        late_at.append(starts[i])
        late_rows.append(row)
    positions = np.arange(plan.num_tokens, dtype=np.int64) - np.repeat(
        starts - plan.num_cached, new
    )
    seq_rows = np.array([s.row for s in seqs], np.int64)
    k_pages = np.ascontiguousarray(plan.kv_pages[0::2], np.int32)
    v_pages = np.ascontiguousarray(plan.kv_pages[1::2], np.int32)
    slot_of: dict[int, int] = {}
    for adapter_id in plan.adapter_ids:
        if adapter_id >= 0:
            slot_of.setdefault(int(adapter_id), len(slot_of))
    seq_slot = np.array([slot_of.get(int(a), -1) for a in plan.adapter_ids], np.int32)
    sample_seqs = np.flatnonzero(plan.flags & FLAG_SAMPLE)
    return StepInputs(
        token_ids=token_ids,
        positions=positions,
        k_pages=k_pages,
        v_pages=v_pages,
        seq_rows=seq_rows,
        cu_q=cu_q,
        ctx_lens=(plan.num_cached + new).astype(np.int32),
        sample_seqs=sample_seqs,
        logits_rows=cu_q[1:][sample_seqs].astype(np.int64) - 1,
        row_slot=np.repeat(seq_slot, new),
        slots=[placed[a] for a in slot_of],
        page_writes=_page_writes(plan, seq_rows, positions, k_pages, v_pages),
        late=None
        if late_step is None
        else LateTokens(np.array(late_at, np.int64), late_step, np.array(late_rows, np.int64)),
    )


def _page_writes(
    plan: StepPlan,
    seq_rows: np.ndarray,
    positions: np.ndarray,
    k_pages: np.ndarray,
    v_pages: np.ndarray,
) -> PageWrites:
    """New sequences' cached prefixes (PROTOCOL.md "Shared pages": positions 0..num_cached-1,
    in the order of the plan), then every new token."""
    new_seqs = np.flatnonzero(plan.flags & FLAG_NEW)
    cached = plan.num_cached[new_seqs].astype(np.int64)
    prefix_positions = np.arange(cached.sum(), dtype=np.int64) - np.repeat(
        np.cumsum(cached) - cached, cached
    )
    prefix = plan.prefix_kv_pages
    token_rows = np.repeat(seq_rows, plan.num_new_tokens.astype(np.int64))
    return PageWrites(
        rows=np.concatenate([np.repeat(seq_rows[new_seqs], cached), token_rows]),
        positions=np.concatenate([prefix_positions, positions]),
        k_pages=np.concatenate([prefix[0::2], k_pages]).astype(np.int32),
        v_pages=np.concatenate([prefix[1::2], v_pages]).astype(np.int32),
    )


def pack_forward_batch(
    inputs: StepInputs,
    table: SequenceTable,
    shapes: dict[str, tuple[int, int]],
    page_width: int,
    packing: Packing,
    max_rank: int | None = None,
) -> Callable[[Uploaded], ForwardBatch]:
    """The eager step's inputs into `packing`; the result gathers the batch from the
    upload (after the step's page writes: it reads the sequences' page-table rows).

    `max_rank` pads the LoRA tables' rank dimension, a constexpr of the kernels: with it
    fixed, a new mix of ranks never makes Triton compile a kernel mid-serving."""
    max_ctx = int(inputs.ctx_lens.max(initial=1))
    lora = None
    if inputs.slots:
        # Prefill runs (several rows on one slot) go to the segment kernel; decode rows
        # to the one-row-per-program kernel.
        lead_rows, segments = 0, None
        if inputs.max_q > 1:
            lead_rows, segments = mixed_segments(inputs.row_slot, inputs.cu_q)
        lora = pack_lora_batch(
            inputs.slots, inputs.row_slot, segments, shapes, page_width, packing,
            max_rank=max_rank, lead_rows=lead_rows,
        )  # fmt: skip
    late = None if inputs.late is None else inputs.late.pack(packing)
    slots = {
        name: packing.add(getattr(inputs, name))
        for name in ("token_ids", "positions", "k_pages", "v_pages", "cu_q", "ctx_lens",
                     "logits_rows", "seq_rows")
    }  # fmt: skip

    def made(sent: Uploaded) -> ForwardBatch:
        token_ids, rows = sent[slots["token_ids"]], sent[slots["seq_rows"]]
        if late is not None:
            late(sent, token_ids)
        return ForwardBatch(
            token_ids=token_ids,
            positions=sent[slots["positions"]],
            k_pages=sent[slots["k_pages"]],
            v_pages=sent[slots["v_pages"]],
            k_table=table.k_table[rows, :max_ctx],
            v_table=table.v_table[rows, :max_ctx],
            cu_q=sent[slots["cu_q"]],
            ctx_lens=sent[slots["ctx_lens"]],
            max_q=inputs.max_q,
            logits_rows=sent[slots["logits_rows"]],
            lora=None if lora is None else lora(sent),
        )

    return made
