"""The executor's per-sequence state, kept across steps: page tables, tokens, last sample.

Page tables live on the device, one row per live sequence ([max_num_seqs, width] for
K and V), so a step only uploads the pages of its new tokens and gathers its rows.

Example:
    table = SequenceTable(max_num_seqs=256, width=4096, device=device)
    seq = table.create(seq_id=5, generator=None)
    table.free(5)
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import BadMessage, CapacityExceeded
from ..grammar.sequence import SequenceGrammar
from ..model.upload import Packing, Uploaded


@dataclass
class SequenceState:
    seq_id: int
    row: int  # this sequence's row in the device page tables
    generator: torch.Generator | None  # seeded sampling; None = the default generator
    num_tokens: int = 0  # tokens with K/V in the pool = positions 0..num_tokens-1
    last_sampled: int | None = None
    # While the last sample is still on the device: (the LaunchedStep that drew it, its
    # row there); last_sampled is None until that step's results come back.
    late: tuple[Any, int] | None = None
    grammar: SequenceGrammar | None = None  # what constrains its samples, if anything
    _tokens: np.ndarray = field(default_factory=lambda: np.zeros(64, np.int32))

    @property
    def tokens(self) -> np.ndarray:
        """int32 [num_tokens]: the token at every position so far."""
        return self._tokens[: self.num_tokens]

    def append(self, new_tokens: np.ndarray) -> None:
        end = self.num_tokens + len(new_tokens)
        if end > len(self._tokens):
            grown = np.zeros(max(end, 2 * len(self._tokens)), np.int32)
            grown[: self.num_tokens] = self.tokens
            self._tokens = grown
        self._tokens[self.num_tokens : end] = new_tokens
        self.num_tokens = end

    def set_token(self, position: int, token: int) -> None:
        """Fills in a token that went into a step from the device before it reached us."""
        self._tokens[position] = token


@dataclass
class PageWrites:
    """Page-table entries a step sets, all [n]: (rows, positions) get k_pages, v_pages."""

    rows: np.ndarray  # int64
    positions: np.ndarray  # int64
    k_pages: np.ndarray  # int32
    v_pages: np.ndarray  # int32


class SequenceTable:
    def __init__(self, max_num_seqs: int, width: int, device: torch.device) -> None:
        self.width = width
        self.k_table = torch.zeros(max_num_seqs, width, dtype=torch.int32, device=device)
        self.v_table = torch.zeros(max_num_seqs, width, dtype=torch.int32, device=device)
        self._free_rows = list(range(max_num_seqs - 1, -1, -1))
        self._seqs: dict[int, SequenceState] = {}

    def __len__(self) -> int:
        return len(self._seqs)

    def __contains__(self, seq_id: int) -> bool:
        return seq_id in self._seqs

    def get(self, seq_id: int) -> SequenceState:
        seq = self._seqs.get(seq_id)
        if seq is None:
            raise BadMessage(f"sequence {seq_id} is not live (no `new` flag and no earlier step)")
        return seq

    def create(self, seq_id: int, generator: torch.Generator | None) -> SequenceState:
        """A fresh state; a live sequence of the same id is dropped first (`new` restarts it)."""
        self.free(seq_id)
        if not self._free_rows:
            raise CapacityExceeded(f"more than {self.k_table.shape[0]} live sequences")
        seq = SequenceState(seq_id, self._free_rows.pop(), generator)
        self._seqs[seq_id] = seq
        return seq

    def free(self, seq_id: int) -> None:
        seq = self._seqs.pop(seq_id, None)
        if seq is not None:
            self._free_rows.append(seq.row)

    def pack_writes(self, writes: PageWrites, packing: Packing) -> Callable[[Uploaded], None]:
        """`writes` into `packing`; the result sets them in the tables from the upload."""
        rows, positions, k_pages, v_pages = (
            packing.add(a) for a in (writes.rows, writes.positions, writes.k_pages, writes.v_pages)
        )

        def write(sent: Uploaded) -> None:
            index = (sent[rows], sent[positions])
            self.k_table.index_put_(index, sent[k_pages])
            self.v_table.index_put_(index, sent[v_pages])

        return write
