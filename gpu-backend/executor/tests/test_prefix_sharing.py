"""Prefix caching on the executor's side (PROTOCOL.md "Shared pages"): a new sequence that
starts from another's pages (`num_cached` > 0 with `prefix_token_ids` / `prefix_kv_pages`)
samples, greedy in fp32, exactly what it samples when it computes its whole prompt itself,
whether those pages were written by an earlier step or by another sequence of its own step,
with penalties reading the prefix as history, and with an adapter."""

import os
from dataclasses import dataclass, field

import numpy as np
import pytest
from fixture_skip import require_fixture

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.protocol.messages import (
    FLAG_NEW,
    FLAG_SAMPLE,
    FLAG_USE_LAST_SAMPLED,
    InitConfig,
    StepPlan,
)
from lorafleet_executor.runtime.executor import Executor

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"
ADAPTER_ID = 3


@dataclass
class Row:
    """One seq's part of a step."""

    seq_id: int
    flags: int
    tokens: list[int]
    num_cached: int
    pages: list[int]  # 2 per token
    num_prompt: int
    prefix_tokens: list[int] = field(default_factory=list)
    prefix_pages: list[int] = field(default_factory=list)
    adapter_id: int = -1


def step_plan(step_id: int, rows: list[Row], penalty: float) -> StepPlan:
    n = len(rows)

    def per_seq(value, dtype):
        return np.full(n, value, dtype)

    return StepPlan(
        step_id=step_id,
        free_seq_ids=np.zeros(0, np.uint32),
        seq_ids=np.array([r.seq_id for r in rows], np.uint32),
        flags=np.array([r.flags for r in rows], np.uint8),
        num_new_tokens=np.array([len(r.tokens) for r in rows], np.int32),
        num_cached=np.array([r.num_cached for r in rows], np.int32),
        num_prompt=np.array([r.num_prompt for r in rows], np.int32),
        adapter_ids=np.array([r.adapter_id for r in rows], np.int32),
        temperature=per_seq(0, np.float32),
        top_p=per_seq(1, np.float32),
        top_k=per_seq(0, np.int32),
        min_p=per_seq(0, np.float32),
        presence_penalty=per_seq(0, np.float32),
        frequency_penalty=per_seq(penalty / 2, np.float32),
        repetition_penalty=per_seq(1 + penalty, np.float32),
        seed=per_seq(-1, np.int64),
        logprobs=per_seq(0, np.int32),
        token_ids=np.array([t for r in rows for t in r.tokens], np.int32),
        kv_pages=np.array([p for r in rows for p in r.pages], np.int32),
        prefix_token_ids=np.array([t for r in rows for t in r.prefix_tokens], np.int32),
        prefix_kv_pages=np.array([p for r in rows for p in r.prefix_pages], np.int32),
    )


class Pages:
    """Hands out fresh page ids, two per token."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, num_tokens: int) -> list[int]:
        pages = list(range(self.next, self.next + 2 * num_tokens))
        self.next += 2 * num_tokens
        return pages


def decode(executor, step_id, seqs, pages, penalty, steps, adapter_id=-1):
    """Greedy decode of `seqs` ({seq_id: context length}) for `steps` steps; tokens per seq."""
    out = {seq_id: [] for seq_id in seqs}
    for k in range(steps):
        rows = [
            Row(s, FLAG_SAMPLE | FLAG_USE_LAST_SAMPLED, [-1], n + k, pages.take(1), n,
                adapter_id=adapter_id)
            for s, n in seqs.items()
        ]  # fmt: skip
        result = executor.step(step_plan(step_id + k, rows, penalty))
        for seq_id, token in zip(result.seq_ids.tolist(), result.tokens.tolist(), strict=True):
            out[seq_id].append(token)
    return out


def prefix_executor(**overrides) -> Executor:
    """The tiny model with tiny-r8 loaded as ADAPTER_ID at the top of the pool."""
    require_fixture(TINY)
    config = dict(model_path=str(TINY), dtype="float32", device="cpu", num_pages=1200,
                  max_num_seqs=8, max_num_batched_tokens=256, max_lora_rank=16,
                  lora_backend="torch")  # fmt: skip
    ex = Executor(InitConfig(**{**config, **overrides}))
    staged = ex.stage_adapter(ADAPTER_ID, str(ROOT / "adapters" / "tiny-r8"))
    ex.load_adapter(ADAPTER_ID, np.arange(1200 - staged.num_pages, 1200, dtype=np.int32))
    return ex


PROMPT = [5, 9, 17, 3, 44, 120, 7, 7, 300, 12, 98, 6, 51, 33, 200, 11, 8, 90, 4, 61]
CASES = [
    (same_step, penalty, adapter_id, num_cached)
    for same_step in (False, True)
    for penalty in (0.0, 0.8)
    for adapter_id in (-1, ADAPTER_ID)
    for num_cached in (16, len(PROMPT) - 1)
]


def reuse_outcome(executor, same_step, penalty, adapter_id, num_cached, steps=8):
    """A `writer` computes PROMPT; a `reader` takes its first num_cached tokens' pages and
    computes the rest; `alone` computes all of it itself. Returns, for reader and alone,
    the logprob of the first sampled token and the `steps` + 1 greedy tokens."""
    pages = Pages()
    writer, reader, alone = 1, 2, 3
    n = len(PROMPT)
    writer_row = Row(writer, FLAG_NEW | FLAG_SAMPLE, PROMPT, 0, pages.take(n), n,
                     adapter_id=adapter_id)  # fmt: skip
    reader_row = Row(
        reader, FLAG_NEW | FLAG_SAMPLE, PROMPT[num_cached:], num_cached,
        pages.take(n - num_cached), n, PROMPT[:num_cached],
        writer_row.pages[: 2 * num_cached], adapter_id,
    )  # fmt: skip
    alone_row = Row(alone, FLAG_NEW | FLAG_SAMPLE, PROMPT, 0, pages.take(n), n,
                    adapter_id=adapter_id)  # fmt: skip
    if same_step:
        # The reader comes first in the step: the writer's K/V is still written before
        # any attention reads it (layer by layer).
        first = executor.step(step_plan(0, [reader_row, writer_row, alone_row], penalty))
    else:
        executor.step(step_plan(0, [writer_row], penalty))
        first = executor.step(step_plan(1, [reader_row, alone_row], penalty))
    tokens = dict(zip(first.seq_ids.tolist(), first.tokens.tolist(), strict=True))
    logprobs = dict(zip(first.seq_ids.tolist(), first.logprobs.tolist(), strict=True))
    assert executor.seqs.get(reader).tokens.tolist() == PROMPT
    later = decode(executor, 10, {reader: n, alone: n}, pages, penalty, steps, adapter_id)
    for seq_id in (writer, reader, alone):
        executor.seqs.free(seq_id)
    return {
        name: (logprobs[seq_id], [tokens[seq_id], *later[seq_id]])
        for name, seq_id in (("reader", reader), ("alone", alone))
    }


@pytest.fixture(scope="module")
def executor():
    return prefix_executor()


@pytest.mark.parametrize(("same_step", "penalty", "adapter_id", "num_cached"), CASES)
def test_a_cached_prefix_yields_what_computing_it_yields(
    executor, same_step, penalty, adapter_id, num_cached
):
    outcome = reuse_outcome(executor, same_step, penalty, adapter_id, num_cached)
    (reader_logprob, reader_tokens), (alone_logprob, alone_tokens) = outcome.values()
    assert reader_tokens == alone_tokens
    assert reader_logprob == pytest.approx(alone_logprob, abs=1e-5)
    assert len(set(alone_tokens)) > 1  # the tokens change from step to step
