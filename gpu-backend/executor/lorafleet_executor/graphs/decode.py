"""Decode steps replayed from CUDA graphs captured at bucketed batch sizes and contexts.

A decode step (one new token per sequence) of B sequences, the longest holding C
tokens, runs the graph of the smallest batch bucket >= B and context bucket >= C; the
extra rows are padding that writes its K/V into the pool's scratch page and reads
nothing anyone uses. The context bucket bounds the page tables' width, which sizes
the decode attention grid, so short contexts do not pay for the longest one. A step
with no adapter rows runs a graph without the LoRA kernels (they would launch and exit
at once: ~0.6 ms a 7B step on the H100). Graphs with LoRA of the smallest context
bucket are captured at start, the others on first use.
Graphs read static buffers (buffers.py): the step's inputs reach them from its one
upload, the page tables are gathered from the sequence table inside the graph, and the
LoRA tables are padded to (max_num_seqs slots, max_rank).
Steps with prefill chunks go to MixedGraphs (mixed.py); both share one memory
pool of the graphs' intermediate tensors (only one graph replays at a time).

Example:
    graphs = DecodeGraphs(model, pool, seqs, max_num_seqs=256, max_rank=64,
                          memory_pool=torch.cuda.graph_pool_handle())
    if graphs.can_run(inputs):
        run = graphs.pack(inputs, packing)
        logits = run(upload.send(packing))  # after the step's page writes
"""

from collections.abc import Callable

import numpy as np
import torch

from ..model.forward_batch import ForwardBatch
from ..model.llama import LlamaModel
from ..model.lora_batch import LoraBatch
from ..model.pool import UnifiedPool
from ..model.upload import Packing, Uploaded
from ..step.inputs import StepInputs
from ..step.sequences import SequenceTable
from .buffers import Field, StaticInputs, capture, token_fields, token_values


def batch_buckets(max_num_seqs: int) -> list[int]:
    """1, 2, 4, 8, then every 16 up to max_num_seqs (as vLLM's capture sizes).

    >>> batch_buckets(40)
    [1, 2, 4, 8, 16, 32, 40]
    """
    sizes = [b for b in (1, 2, 4, 8) if b < max_num_seqs]
    sizes += list(range(16, max_num_seqs, 16))
    return sizes + [max_num_seqs]


def context_buckets(max_context: int) -> list[int]:
    """256, 1024, 4096, ... (x4) up to max_context.

    >>> context_buckets(5000)
    [256, 1024, 4096, 5000]
    """
    sizes = []
    size = 256
    while size < max_context:
        sizes.append(size)
        size *= 4
    return sizes + [max_context]


class DecodeGraphs:
    def __init__(
        self,
        model: LlamaModel,
        pool: UnifiedPool,
        seqs: SequenceTable,
        max_num_seqs: int,
        max_rank: int,
        memory_pool: tuple,
    ) -> None:
        self.model, self.pool, self.seqs = model, pool, seqs
        self.num_slots = max_num_seqs
        self.buckets = batch_buckets(max_num_seqs)
        self.context_buckets = context_buckets(seqs.width)
        device = pool.data.device
        size = self.buckets[-1]

        self.static = StaticInputs(
            {
                **token_fields(size, pool.scratch_page),
                "seq_rows": Field(np.int64, size),
                "ctx_lens": Field(np.int32, size, 1),
            },
            model.cfg.module_shapes(),
            pool,
            max_num_seqs,
            max_rank,
        )
        self.cu_q = torch.arange(size + 1, dtype=torch.int32, device=device)
        self.rows = torch.arange(size, dtype=torch.int64, device=device)
        # (batch bucket, context bucket, with LoRA) -> (graph, its logits)
        self.graphs: dict[tuple[int, int, bool], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.memory_pool = memory_pool
        for size in reversed(self.buckets):
            self._capture(size, self.context_buckets[0], True)

    def can_run(self, inputs: StepInputs) -> bool:
        return (
            inputs.max_q == 1
            and len(inputs.seq_rows) <= self.buckets[-1]
            and len(inputs.slots) <= self.num_slots
        )

    def pack(self, inputs: StepInputs, packing: Packing) -> Callable[[Uploaded], torch.Tensor]:
        """The step's inputs into `packing`; the result fills the static buffers from the
        upload and replays: float32 [N, vocab] logits of the sampling rows."""
        n = len(inputs.seq_rows)
        with_lora = bool(inputs.slots)
        key = (
            next(b for b in self.buckets if b >= n),
            next(c for c in self.context_buckets if c >= int(inputs.ctx_lens.max())),
            with_lora,
        )
        values = {**token_values(inputs), "seq_rows": inputs.seq_rows, "ctx_lens": inputs.ctx_lens}
        fill = self.static.pack(inputs, packing, values)
        logits_rows = packing.add(inputs.logits_rows)

        def run(sent: Uploaded) -> torch.Tensor:
            fill(sent)
            if key not in self.graphs:
                self._capture(*key)
            graph, logits = self.graphs[key]
            graph.replay()
            return logits[sent[logits_rows]]

        return run

    def _batch(self, size: int, context: int, with_lora: bool) -> ForwardBatch:
        k_table, v_table = self.seqs.k_table, self.seqs.v_table
        views = self.static.views
        rows = views["seq_rows"][:size]
        lora = None
        if with_lora:
            lora = LoraBatch(
                row_slot=views["row_slot"][:size],
                segments=None,
                run_lengths=None,
                groups=self.static.lora.groups,
            )
        return ForwardBatch(
            **{
                name: views[name][:size]
                for name in ("token_ids", "positions", "k_pages", "v_pages")
            },
            k_table=k_table[rows, :context],
            v_table=v_table[rows, :context],
            cu_q=self.cu_q[: size + 1],
            ctx_lens=views["ctx_lens"][:size],
            max_q=1,
            logits_rows=self.rows[:size],
            lora=lora,
        )

    def _capture(self, size: int, context: int, with_lora: bool) -> None:
        self.graphs[(size, context, with_lora)] = capture(
            lambda: self.model.forward(self.pool, self._batch(size, context, with_lora)),
            self.memory_pool,
        )
