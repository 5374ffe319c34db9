"""Sampling: masks, penalties and logprobs against simple references; seeded draws."""

import numpy as np
import pytest
import torch

from lorafleet_executor.model.sampling import (
    SamplingParams,
    TokenHistory,
    _filtered_probs,
    apply_penalties,
    sample,
)
from lorafleet_executor.model.upload import Packing, StepUpload

CPU = torch.device("cpu")


def params(n, generators=None, histories=None, **overrides):
    arrays = {
        "temperature": np.ones(n, np.float32),
        "top_p": np.ones(n, np.float32),
        "top_k": np.zeros(n, np.int32),
        "min_p": np.zeros(n, np.float32),
        "presence_penalty": np.zeros(n, np.float32),
        "frequency_penalty": np.zeros(n, np.float32),
        "repetition_penalty": np.ones(n, np.float32),
        "logprobs": np.full(n, -1, np.int32),
    }
    for name, value in overrides.items():
        arrays[name] = np.broadcast_to(np.asarray(value, arrays[name].dtype), (n,)).copy()
    packing = Packing()
    made = SamplingParams.pack(packing, generators or [None] * n, histories or [], **arrays)
    return made(StepUpload(CPU).send(packing))


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def test_greedy_is_argmax_and_ignores_masks():
    logits = torch.randn(5, 50, generator=seeded(0))
    out = sample(logits, params(5, temperature=0.0, top_k=3, top_p=0.2))
    assert torch.equal(out.tokens, logits.argmax(-1))
    assert out.logprobs.isnan().all()


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.randn(4, 100, generator=seeded(1))
    probs = _filtered_probs(logits, params(4, top_k=[1, 5, 17, 0]))
    for row, k in enumerate([1, 5, 17, 100]):
        kept = set(torch.nonzero(probs[row]).flatten().tolist())
        assert kept == set(logits[row].topk(k).indices.tolist())
        assert probs[row].sum() == pytest.approx(1.0, abs=1e-5)


def reference_top_p(p_row: np.ndarray, top_p: float) -> set[int]:
    """The smallest set of most likely tokens whose mass reaches top_p."""
    order = np.argsort(-p_row, kind="stable")
    kept, mass = set(), 0.0
    for token in order:
        kept.add(int(token))
        mass += p_row[token]
        if mass >= top_p:
            break
    return kept


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.7, 0.95])
def test_top_p_keeps_the_smallest_prefix_reaching_p(top_p):
    logits = torch.randn(6, 64, generator=seeded(2)) * 3
    probs = _filtered_probs(logits, params(6, top_p=top_p))
    softmax = logits.softmax(-1).double().numpy()
    for row in range(6):
        assert set(torch.nonzero(probs[row]).flatten().tolist()) == reference_top_p(
            softmax[row], top_p
        )


def test_min_p_keeps_tokens_above_a_share_of_the_top_one():
    logits = torch.randn(3, 80, generator=seeded(3)) * 2
    probs = _filtered_probs(logits, params(3, min_p=[0.0, 0.1, 0.5], temperature=0.7))
    scaled = (logits / 0.7).softmax(-1)
    for row, min_p in enumerate([0.0, 0.1, 0.5]):
        expected = scaled[row] >= min_p * scaled[row].max()
        assert torch.equal(probs[row] > 0, expected)


def test_temperature_sharpens_and_draws_follow_the_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(6000, 1)
    out = sample(logits, params(6000, temperature=0.5))
    freq = torch.bincount(out.tokens, minlength=4).float() / 6000
    expected = (logits[0] / 0.5).softmax(-1)
    torch.testing.assert_close(freq, expected, atol=0.025, rtol=0)


def test_seeded_rows_repeat_whatever_the_batch():
    logits = torch.randn(1, 1000, generator=seeded(4))
    alone = [sample(logits, params(1, generators=[seeded(42)])).tokens.item() for _ in range(5)]
    batch = logits.repeat(3, 1)
    draws = [
        sample(batch, params(3, generators=[None, seeded(42), seeded(7)])).tokens for _ in range(5)
    ]
    assert [d[1].item() for d in draws] == alone
    # one generator across steps advances: five draws are not all the same token
    gen = seeded(42)
    series = [sample(logits, params(1, generators=[gen])).tokens.item()
              for _ in range(5)]  # fmt: skip
    assert series[0] == alone[0] and len(set(series)) > 1


def reference_penalties(logits, history, num_prompt, rep, pres, freq):
    out = logits.clone()
    seen = set(history)
    counts = {}
    for t in history[num_prompt:]:
        counts[t] = counts.get(t, 0) + 1
    for t in seen:
        out[t] = out[t] / rep if out[t] > 0 else out[t] * rep
    for t, c in counts.items():
        out[t] -= freq * c + pres
    return out


def test_penalties_match_a_plain_loop():
    rng = np.random.default_rng(5)
    logits = torch.randn(4, 30, generator=seeded(5))
    histories = [
        TokenHistory(rng.integers(0, 30, size=n), p) for n, p in [(10, 4), (6, 6), (15, 0), (1, 0)]
    ]
    reps, pres, freq = [1.3, 1.0, 0.8, 2.0], [0.5, 1.0, 0.0, -0.5], [0.2, 0.0, 1.5, 0.1]
    got = apply_penalties(
        logits,
        params(4, histories=histories, repetition_penalty=reps, presence_penalty=pres,
               frequency_penalty=freq),
    )  # fmt: skip
    for row, h in enumerate(histories):
        ref = reference_penalties(
            logits[row], h.tokens.tolist(), h.num_prompt, reps[row], pres[row], freq[row]
        )
        torch.testing.assert_close(got[row], ref)


def test_logprobs_are_raw_log_softmax_with_top_n():
    logits = torch.randn(3, 40, generator=seeded(6))
    logits[0] = 0.0
    logits[0, 3], logits[0, 20] = 2.0, 1.5  # token 3 is in the history, 20 is not
    out = sample(
        logits,
        params(3, histories=[TokenHistory(np.arange(10), 5) for _ in range(3)],
               temperature=[0.0, 1.0, 0.0], repetition_penalty=2.0, logprobs=[0, 4, -1]),
    )  # fmt: skip
    raw = torch.log_softmax(logits, -1)
    torch.testing.assert_close(out.logprobs[:2], raw[torch.arange(2), out.tokens[:2]])
    assert out.logprobs[2].isnan()
    top = raw[1].topk(4)
    assert torch.equal(out.top_ids[1, :4], top.indices)
    torch.testing.assert_close(out.top_logprobs[1, :4], top.values)
    # the penalty (3: 2.0 / 2 < 1.5) steers the choice, not the reported logprobs
    assert out.tokens[0] == 20
