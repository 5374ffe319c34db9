"""Steps with prefill chunks (mixed with decode rows or not) replayed from CUDA graphs.

Eager, such a step is bound by the host: its ~300 launches (Triton's dispatch and the
wrappers' checks) took 16 ms beside 7 ms of GPU work for a 256-token prefill of
Llama-2-7B on an H100, and adapters double the launching (bench/gpu/step_profile.py).
A graph is captured per token bucket T (128, 192, 256, ... up to min(max_num_tokens,
2048)) and per set of LoRA groups the step's adapters target; the step's T tokens are
padded to its bucket, the padding rows writing their K/V into the scratch page.

What would make a grid depend on the step is cut into pieces of at most BLOCK rows on
the host: each sequence's queries become pseudo-sequences of <= BLOCK queries (ending
at the right context length, reading the sequence's page-table row), and each run of
rows on one adapter after the leading decode rows (lora_batch.mixed_segments: those go
one per program, as in decode steps) becomes segments of <= BLOCK rows. Then the
attention and LoRA segment kernels need one row tile per piece, and their grids are the
piece count's bound, T // BLOCK + max_num_seqs + 1; unused pieces are empty and exit at
once. The pieces are exactly the tiles the eager kernels take, so the results are the
eager step's.
Larger steps run eagerly: their GPU work outweighs the launches.

Example:
    graphs = MixedGraphs(model, pool, seqs, max_num_seqs=128, max_num_tokens=2048,
                         max_rank=64, memory_pool=torch.cuda.graph_pool_handle())
    if graphs.can_run(inputs):
        run = graphs.pack(inputs, packing)
        logits = run(upload.send(packing))  # after the step's page writes
"""

from collections.abc import Callable

import numpy as np
import torch

from ..kernels.attention_prefill import BLOCK_M
from ..kernels.lora_prefill import BLOCK_T
from ..model.forward_batch import ForwardBatch
from ..model.llama import LlamaModel
from ..model.lora_batch import GROUPS, LoraBatch, mixed_segments, targeted_groups
from ..model.pool import UnifiedPool
from ..model.upload import Packing, Uploaded
from ..step.inputs import StepInputs
from ..step.sequences import SequenceTable
from .buffers import Field, StaticInputs, capture, token_fields, token_values

BLOCK = BLOCK_M
assert BLOCK_T == BLOCK, "attention query tiles and LoRA row tiles are cut alike"
MAX_GRAPH_TOKENS = 2048


def token_buckets(max_tokens: int) -> list[int]:
    """Powers of two from 128 and their midpoints, up to max_tokens.

    >>> token_buckets(600)
    [128, 192, 256, 384, 512, 600]
    """
    sizes = [s for p in range(7, 12) for s in (2**p, 3 * 2 ** (p - 1)) if s < max_tokens]
    return sizes + [max_tokens]


def split_ranges(offsets: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranges given by CSR offsets [n+1] cut into pieces of at most `block` rows from
    each range's start: (the pieces' offsets int32 [k+1], each piece's range [k]).

    >>> split_ranges(np.array([0, 3, 4]), 2)
    (array([0, 2, 3, 4], dtype=int32), array([0, 0, 1]))
    """
    lengths = np.diff(offsets)
    pieces = -(-lengths // block)
    owner = np.repeat(np.arange(len(lengths)), pieces)
    first = np.cumsum(pieces) - pieces
    starts = offsets[owner] + (np.arange(len(owner)) - first[owner]) * block
    return np.append(starts, offsets[-1]).astype(np.int32), owner


class PaddedMixedBatch:
    """The static inputs of mixed steps of up to `size` tokens, cut into pieces and
    padded as above; `batch` gives a bucket's ForwardBatch over them (any device)."""

    def __init__(
        self,
        model: LlamaModel,
        pool: UnifiedPool,
        seqs: SequenceTable,
        max_num_seqs: int,
        size: int,
        max_rank: int,
    ) -> None:
        self.seqs = seqs
        self.max_num_seqs = max_num_seqs
        pieces = self.max_pieces(size)

        self.static = StaticInputs(
            {
                **token_fields(size, pool.scratch_page),
                "piece_rows": Field(np.int64, pieces),  # each pseudo-seq's table row
                "cu_q": Field(np.int32, pieces + 1),
                "ctx_lens": Field(np.int32, pieces),
                "seg_starts": Field(np.int32, pieces + 1),
                "seg_slot": Field(np.int32, pieces, -1),
                "logits_rows": Field(np.int64, max_num_seqs),
            },
            model.cfg.module_shapes(),
            pool,
            max_num_seqs,
            max_rank,
        )

    def max_pieces(self, tokens: int) -> int:
        # Each sequence (and each run of one adapter) has one short piece at most, and
        # the padding rows take one more.
        return tokens // BLOCK + self.max_num_seqs + 1

    def pack(self, inputs: StepInputs, bucket: int, packing: Packing) -> Callable[[Uploaded], None]:
        """The step's values, its rows padded to `bucket`, into `packing`; the result fills
        the static buffers from the upload."""
        num_tokens = len(inputs.token_ids)
        cu_q, seq = split_ranges(inputs.cu_q, BLOCK)
        # A piece's context ends at its last query: the sequence's minus the queries after it.
        ctx_lens = inputs.ctx_lens[seq] - (inputs.cu_q[seq + 1] - cu_q[1:])
        # The padding rows: one more piece, attending over themselves (in page-table row 0,
        # any valid pages) and on no adapter; the pieces after it are empty.
        padding = bucket - num_tokens
        _, (run_starts, run_slot) = mixed_segments(inputs.row_slot, inputs.cu_q)
        seg_starts, run = split_ranges(run_starts, BLOCK)
        values = {
            **token_values(inputs),
            "piece_rows": inputs.seq_rows[seq],
            "cu_q": np.append(cu_q, bucket),
            "ctx_lens": np.append(ctx_lens, padding),
            "seg_starts": np.append(seg_starts, bucket),
            "seg_slot": run_slot[run],
            "logits_rows": inputs.logits_rows,
        }
        return self.static.pack(
            inputs, packing, values, pads={"cu_q": bucket, "seg_starts": bucket}
        )

    def batch(self, size: int, groups: frozenset) -> ForwardBatch:
        """The forward batch of bucket `size` with the LoRA `groups` (names of GROUPS)."""
        pieces = self.max_pieces(size)
        views = self.static.views
        rows = views["piece_rows"][:pieces]
        lora = LoraBatch(
            row_slot=views["row_slot"][:size],
            segments=(views["seg_starts"][: pieces + 1], views["seg_slot"][:pieces]),
            # pieces of at most BLOCK rows: one row tile each
            run_lengths=np.full(pieces, BLOCK),
            groups={n: g if n in groups else None for n, g in self.static.lora.groups.items()},
            # the decode rows before the pieces: at most one per sequence
            lead_rows=min(size, self.max_num_seqs),
        )
        return ForwardBatch(
            **{
                name: views[name][:size]
                for name in ("token_ids", "positions", "k_pages", "v_pages")
            },
            k_table=self.seqs.k_table[rows],
            v_table=self.seqs.v_table[rows],
            cu_q=views["cu_q"][: pieces + 1],
            ctx_lens=views["ctx_lens"][:pieces],
            max_q=BLOCK,
            logits_rows=views["logits_rows"],
            lora=lora if groups else None,
        )


class MixedGraphs:
    def __init__(
        self,
        model: LlamaModel,
        pool: UnifiedPool,
        seqs: SequenceTable,
        max_num_seqs: int,
        max_num_tokens: int,
        max_rank: int,
        memory_pool: tuple,
    ) -> None:
        self.model, self.pool = model, pool
        self.max_num_seqs = max_num_seqs
        # the padding rows' piece reads up to a bucket's width of its page-table row
        self.buckets = token_buckets(min(max_num_tokens, MAX_GRAPH_TOKENS, seqs.width))
        self.memory_pool = memory_pool
        self.inputs = PaddedMixedBatch(model, pool, seqs, max_num_seqs, self.buckets[-1], max_rank)
        self.graphs: dict[tuple[int, frozenset], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        # Every group: right for any step (untargeted groups have rank 0); steps whose
        # adapters target fewer groups capture their own on first use, without the
        # no-op launches.
        for bucket in reversed(self.buckets):
            self._capture(bucket, frozenset(GROUPS))

    def can_run(self, inputs: StepInputs) -> bool:
        return (
            inputs.max_q > 1
            and len(inputs.token_ids) <= self.buckets[-1]
            and len(inputs.seq_rows) <= self.max_num_seqs
        )

    def pack(self, inputs: StepInputs, packing: Packing) -> Callable[[Uploaded], torch.Tensor]:
        """The step's inputs into `packing`; the result fills the static buffers from the
        upload and replays: float32 [N, vocab] logits of the sampling rows (valid until
        the next replay)."""
        bucket = next(b for b in self.buckets if b >= len(inputs.token_ids))
        fill = self.inputs.pack(inputs, bucket, packing)
        key = (bucket, targeted_groups(inputs.slots))

        def run(sent: Uploaded) -> torch.Tensor:
            fill(sent)
            if key not in self.graphs:
                self._capture(*key)
            graph, logits = self.graphs[key]
            graph.replay()
            return logits[: len(inputs.logits_rows)]

        return run

    def _capture(self, size: int, groups: frozenset) -> None:
        self.graphs[(size, groups)] = capture(
            lambda: self.model.forward(self.pool, self.inputs.batch(size, groups)),
            self.memory_pool,
        )
