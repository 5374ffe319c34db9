"""A checked step plan turned into the host arrays of one forward pass.

Resolves `use_last_sampled` tokens, positions, slots of the adapters in the step and
which rows sample. Pure numpy: the device side is `to_forward_batch`.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..model.forward_batch import ForwardBatch
from ..model.lora_batch import PlacedAdapter, build_lora_batch, mixed_segments
from ..model.transfer import to_device
from ..protocol.messages import FLAG_SAMPLE, FLAG_USE_LAST_SAMPLED, StepPlan
from .sequences import SequenceState, SequenceTable


@dataclass
class StepInputs:
    token_ids: np.ndarray  # int64 [T], -1 entries resolved
    positions: np.ndarray  # int64 [T]
    table_rows: np.ndarray  # int64 [T]: each token's sequence row in the page tables
    k_pages: np.ndarray  # int32 [T]
    v_pages: np.ndarray  # int32 [T]
    seq_rows: np.ndarray  # int64 [B]
    cu_q: np.ndarray  # int32 [B + 1]
    ctx_lens: np.ndarray  # int32 [B]
    sample_seqs: np.ndarray  # int64 [N]: which seqs of the step sample
    logits_rows: np.ndarray  # int64 [N]: their last token's row
    row_slot: np.ndarray  # int32 [T], -1 = base model
    slots: list[PlacedAdapter]  # the adapters of the step, by slot
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

    def write(self, token_ids: torch.Tensor) -> None:
        device = token_ids.device
        token_ids[to_device(self.at, device)] = self.step.tokens[to_device(self.rows, device)]


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
    slot_of: dict[int, int] = {}
    for adapter_id in plan.adapter_ids:
        if adapter_id >= 0:
            slot_of.setdefault(int(adapter_id), len(slot_of))
    seq_slot = np.array([slot_of.get(int(a), -1) for a in plan.adapter_ids], np.int32)
    sample_seqs = np.flatnonzero(plan.flags & FLAG_SAMPLE)
    return StepInputs(
        token_ids=token_ids,
        positions=positions,
        table_rows=np.repeat(seq_rows, new),
        k_pages=np.ascontiguousarray(plan.kv_pages[0::2], np.int32),
        v_pages=np.ascontiguousarray(plan.kv_pages[1::2], np.int32),
        seq_rows=seq_rows,
        cu_q=cu_q,
        ctx_lens=(plan.num_cached + new).astype(np.int32),
        sample_seqs=sample_seqs,
        logits_rows=cu_q[1:][sample_seqs].astype(np.int64) - 1,
        row_slot=np.repeat(seq_slot, new),
        slots=[placed[a] for a in slot_of],
        late=None
        if late_step is None
        else LateTokens(np.array(late_at, np.int64), late_step, np.array(late_rows, np.int64)),
    )


def to_forward_batch(
    inputs: StepInputs,
    table: SequenceTable,
    shapes: dict[str, tuple[int, int]],
    page_width: int,
    device: torch.device,
    max_rank: int | None = None,
) -> ForwardBatch:
    """Writes the new tokens' pages into the sequences' page tables and gathers the batch.

    `max_rank` pads the LoRA tables' rank dimension, a constexpr of the kernels: with it
    fixed, a new mix of ranks never makes Triton compile a kernel mid-serving."""
    table.write_pages(inputs.table_rows, inputs.positions, inputs.k_pages, inputs.v_pages)
    max_ctx = int(inputs.ctx_lens.max(initial=1))
    rows = to_device(inputs.seq_rows, device)
    lora = None
    if inputs.slots:
        # Prefill runs (several rows on one slot) go to the segment kernel; decode rows
        # to the one-row-per-program kernel.
        lead_rows, segments = 0, None
        if inputs.max_q > 1:
            lead_rows, segments = mixed_segments(inputs.row_slot, inputs.cu_q)
        lora = build_lora_batch(
            inputs.slots, inputs.row_slot, segments, shapes, page_width, device,
            max_rank=max_rank, lead_rows=lead_rows,
        )  # fmt: skip
    token_ids = to_device(inputs.token_ids, device)
    if inputs.late is not None:
        inputs.late.write(token_ids)
    return ForwardBatch(
        token_ids=token_ids,
        positions=to_device(inputs.positions, device),
        k_pages=to_device(inputs.k_pages, device),
        v_pages=to_device(inputs.v_pages, device),
        k_table=table.k_table[rows, :max_ctx],
        v_table=table.v_table[rows, :max_ctx],
        cu_q=to_device(inputs.cu_q, device),
        ctx_lens=to_device(inputs.ctx_lens, device),
        max_q=inputs.max_q,
        logits_rows=to_device(inputs.logits_rows, device),
        lora=lora,
    )
