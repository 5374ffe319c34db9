"""A step whose GPU work is queued, so the next can be launched before its samples are
read: the host's share of a step (inputs, launches, the result) then overlaps the GPU's
work on the one before instead of leaving the GPU idle (vLLM's async scheduling).

The samples travel to pinned host memory by copies queued right behind the step; `wait`
blocks until they are there, builds the StepResult and hands each sampled sequence its
token. Until then a sequence's `late` names this step and its row in `tokens`, the
sampled tokens on the device, which a following step reads from there
(inputs.LateTokens); `fill_in` registers where such a token went into a sequence's
history, to be written once it is known.

Example:
    launched = LaunchedStep(plan.step_id, seq_ids, sampled_seqs, out, counts, errors, forward_ms)
    ...                         # launch the next step
    result = launched.wait()    # the StepResult; every sampled seq has last_sampled set
"""

import time

import numpy as np
import torch

from ..model.sampling import SampleOutput
from ..protocol.messages import StepResult
from .sequences import SequenceState


class LaunchedStep:
    def __init__(
        self,
        step_id: int,
        seq_ids: np.ndarray,
        seqs: list[SequenceState],
        out: SampleOutput,
        counts: np.ndarray,
        grammar_errors: np.ndarray,
        forward_ms: float,
    ) -> None:
        """`seqs` sampled `out`'s rows, in order; `counts` top logprobs each asked for;
        `grammar_errors` u8 per row, 1 = its grammar failed."""
        self.step_id, self.seq_ids, self.seqs = step_id, seq_ids, seqs
        self.counts, self.grammar_errors, self.forward_ms = counts, grammar_errors, forward_ms
        self.tokens = out.tokens
        self._host = [
            _to_host(t) for t in (out.tokens, out.logprobs, out.top_ids, out.top_logprobs)
        ]
        self._done = None
        if out.tokens.is_cuda:
            self._done = torch.cuda.Event()
            self._done.record()
        self._fill_ins: list[tuple[SequenceState, int, int]] = []
        self._tokens: np.ndarray | None = None  # on the host, once waited for
        self._result: StepResult | None = None
        for row, seq in enumerate(seqs):
            seq.last_sampled, seq.late = None, (self, row)

    @classmethod
    def done(cls, result: StepResult) -> "LaunchedStep":
        """A step with nothing left on the device (no samples, or read back already)."""
        step = cls.__new__(cls)
        step._result = result
        return step

    @property
    def waited(self) -> bool:
        return self._result is not None

    def ready(self) -> bool:
        """Whether `wait` would return at once."""
        return self._result is not None or self._done is None or self._done.query()

    def fill_in(self, seq: SequenceState, position: int, row: int) -> None:
        """`seq`'s token at `position` is this step's sample `row` (written now if this
        step was waited for already: a constrained step waits before it commits)."""
        if self._tokens is not None:
            seq.set_token(position, int(self._tokens[row]))
        else:
            self._fill_ins.append((seq, position, row))

    def wait(self) -> StepResult:
        if self._result is not None:
            return self._result
        started = time.perf_counter()
        if self._done is not None:
            self._done.synchronize()
        tokens, logprobs, top_ids, top_logprobs = (t.numpy() for t in self._host)
        tokens = tokens.astype(np.int32)
        self._tokens = tokens
        for row, seq in enumerate(self.seqs):
            if seq.late is not None and seq.late[0] is self:
                seq.last_sampled, seq.late = int(tokens[row]), None
        for seq, position, row in self._fill_ins:
            seq.set_token(position, int(tokens[row]))
        # A grammar's row has -inf at every token it forbids: those are no alternatives.
        keep = (np.arange(top_ids.shape[1])[None, :] < self.counts[:, None]) & np.isfinite(
            top_logprobs
        )
        self._result = StepResult(
            step_id=self.step_id,
            seq_ids=self.seq_ids.astype(np.uint32),
            tokens=tokens,
            logprobs=logprobs.astype(np.float32),
            top_counts=keep.sum(axis=1).astype(np.int32),
            top_ids=top_ids[keep].astype(np.int32),
            top_logprobs=top_logprobs[keep].astype(np.float32),
            grammar_errors=self.grammar_errors,
        )
        self._result.forward_ms = self.forward_ms
        self._result.sample_ms = (time.perf_counter() - started) * 1e3
        return self._result


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    if not tensor.is_cuda:
        return tensor
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    return host.copy_(tensor, non_blocking=True)
