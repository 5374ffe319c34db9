"""LaunchedStep: waiting hands each sampled sequence its token, fills in the history
entries a later step took from the device, and builds the StepResult once."""

import numpy as np
import torch

from lorafleet_executor.model.sampling import SampleOutput
from lorafleet_executor.step.launched import LaunchedStep
from lorafleet_executor.step.sequences import SequenceState

NO_ERRORS = np.zeros(2, np.uint8)


def sample_output(tokens: list[int], top: int) -> SampleOutput:
    n = len(tokens)
    return SampleOutput(
        tokens=torch.tensor(tokens),
        logprobs=torch.full((n,), -0.5),
        top_ids=torch.arange(n * top).view(n, top),
        top_logprobs=torch.full((n, top), -1.0),
    )


def test_wait_sets_last_sampled_fills_in_history_and_returns_one_result():
    a, b = SequenceState(1, 0, None), SequenceState(2, 1, None)
    a.append(np.array([5, 6], np.int32))
    b.append(np.array([7], np.int32))
    counts = np.array([2, 0], np.int32)
    step = LaunchedStep(
        3, np.array([1, 2]), [a, b], sample_output([40, 41], 2), counts, NO_ERRORS[:2], 1.5
    )
    assert a.late == (step, 0) and b.late == (step, 1) and a.last_sampled is None
    # A later step took a's token from the device into position 2 and sampled b again.
    a.append(np.array([0], np.int32))
    step.fill_in(a, 2, 0)
    later = LaunchedStep(
        4, np.array([2]), [b], sample_output([42], 1), np.zeros(1, np.int32), NO_ERRORS[:1], 1
    )
    result = step.wait()
    assert a.tokens.tolist() == [5, 6, 40] and a.last_sampled == 40 and a.late is None
    assert b.late == (later, 0) and b.last_sampled is None  # its newer sample is pending
    assert result.tokens.tolist() == [40, 41] and result.seq_ids.tolist() == [1, 2]
    assert result.top_ids.tolist() == [0, 1] and result.top_counts.tolist() == [2, 0]
    assert result.forward_ms == 1.5 and step.waited and step.wait() is result
    assert later.wait().tokens.tolist() == [42] and b.last_sampled == 42


def test_a_done_step_returns_its_result():
    a = SequenceState(1, 0, None)
    step = LaunchedStep(
        9, np.array([1]), [a], sample_output([8], 1), np.zeros(1, np.int32), NO_ERRORS[:1], 0
    )
    result = step.wait()
    assert LaunchedStep.done(result).wait() is result


def test_a_fill_in_after_the_wait_is_written_at_once():
    """A step with constrained rows waits for the step before it *before* it commits its
    tokens (executor._apply_grammars): the fill-in then comes late and is written now."""
    a = SequenceState(1, 0, None)
    a.append(np.array([5], np.int32))
    step = LaunchedStep(3, np.array([1]), [a], sample_output([40], 1), np.zeros(1, np.int32),
                        NO_ERRORS[:1], 0)  # fmt: skip
    step.wait()
    a.append(np.array([0], np.int32))
    step.fill_in(a, 1, 0)
    assert a.tokens.tolist() == [5, 40]
