"""Per step, the constrained rows' token masks: filled on the CPU by llguidance's thread
pool (the GIL released; the executor launches the step's forward first, so this runs
while the GPU computes it), then applied to the logits in one launch before sampling
(kernels/token_bitmask.py). Rows without a grammar are not touched, and a step without
constrained rows never gets here.

A failed matcher's row gets a mask that allows only EOS: the row ends, and the step
result flags it (`grammar_errors`).

Example:
    masks = GrammarMasks(max_rows=256, vocab_size=32000, eos_ids=[2], device=device)
    failed = masks.apply(logits, rows=[0, 3], grammars=[g0, g3])  # u8 per grammar
"""

import time

import llguidance
import llguidance.torch
import numpy as np
import torch

from ..kernels.token_bitmask import apply_token_bitmask
from .sequence import SequenceGrammar


class GrammarMasks:
    def __init__(
        self,
        max_rows: int,
        vocab_size: int,
        eos_ids: list[int],
        device: torch.device,
        threads: int,
    ) -> None:
        self.device = device
        words = (vocab_size + 31) // 32
        pinned = device.type == "cuda"
        # A step's rows, then their masks, in one buffer: one copy takes both to the device.
        # Two pinned host buffers in turn: a step's copy may still be queued when the next
        # step fills (it waits for that step's samples, not for the copy).
        self._words, self._max_rows = words, max_rows
        size = max_rows * (1 + words)
        self._host = [torch.zeros(size, dtype=torch.int32, pin_memory=pinned) for _ in range(2)]
        self._on_device = torch.zeros(size, dtype=torch.int32, device=device) if pinned else None
        self._turn = 0
        self._eos_only = torch.zeros(words, dtype=torch.int32)
        for eos in eos_ids:
            if eos < vocab_size:
                word = self._eos_only[eos // 32].item() | (1 << (eos % 32))
                self._eos_only[eos // 32] = word - (1 << 32) if word >= 1 << 31 else word
        self.threads = llguidance.LLExecutor(num_threads=threads)  # feed_all uses it too
        self.last_fill_us = 0.0  # the CPU's share of the last call (benchmarks read it)

    def apply(
        self, logits: torch.Tensor, rows: list[int], grammars: list[SequenceGrammar]
    ) -> np.ndarray:
        """Masks logits rows `rows` [K] by `grammars` [K]; returns u8 [K]: 1 = failed."""
        started = time.perf_counter()
        k = len(rows)
        host = self._host[self._turn]
        self._turn ^= 1
        host[:k] = torch.from_numpy(np.asarray(rows, np.int32))
        masks = self._masks(host, k)
        live = [(g.matcher, j) for j, g in enumerate(grammars) if not g.failed]
        if live:
            llguidance.torch.fill_next_token_bitmask_par(self.threads, live, masks)
        for j, grammar in enumerate(grammars):
            grammar.check()
            if grammar.failed:
                masks[j] = self._eos_only
        failed = np.array([g.failed for g in grammars], np.uint8)
        sent = host
        if self._on_device is not None:  # from pinned memory: not waited for
            end = self._max_rows + k * self._words
            sent = self._on_device
            sent[:end].copy_(host[:end], non_blocking=True)
        apply_token_bitmask(logits, self._masks(sent, k), sent[:k])
        self.last_fill_us = (time.perf_counter() - started) * 1e6
        return failed

    def _masks(self, buffer: torch.Tensor, k: int) -> torch.Tensor:
        """The [k, words] masks of a buffer laid out as [rows (max_rows) | masks]."""
        start = self._max_rows
        return buffer[start : start + k * self._words].view(k, self._words)
