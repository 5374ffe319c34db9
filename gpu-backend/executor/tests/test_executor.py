"""The Executor's message handling: ready meta, step plan checks and their named errors,
per-sequence state across steps, a new sequence starting from a cached prefix (PROTOCOL.md
"Shared pages"), and stats."""

import os
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from fixture_skip import require_fixture

from lorafleet_executor.errors import BadMessage, CapacityExceeded, PageOutOfRange, UnknownAdapter
from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.model.config import ModelInvalid
from lorafleet_executor.protocol.messages import (
    FLAG_NEW,
    FLAG_SAMPLE,
    FLAG_USE_LAST_SAMPLED,
    InitConfig,
    StepPlan,
)
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"


@pytest.fixture
def executor():
    require_fixture(TINY)
    return Executor(InitConfig(model_path=str(TINY), num_pages=400, max_num_seqs=4,
                               max_num_batched_tokens=32))  # fmt: skip


def plan(step_id, seqs, free=()):
    """seqs: (seq_id, flags, tokens, num_cached, first KV page); greedy, base model."""
    n = len(seqs)
    tokens = [t for s in seqs for t in s[2]]
    pages = [p for s in seqs for p in range(s[4], s[4] + 2 * len(s[2]))]
    return StepPlan(
        step_id=step_id,
        free_seq_ids=np.array(free, np.uint32),
        seq_ids=np.array([s[0] for s in seqs], np.uint32),
        flags=np.array([s[1] for s in seqs], np.uint8),
        num_new_tokens=np.array([len(s[2]) for s in seqs], np.int32),
        num_cached=np.array([s[3] for s in seqs], np.int32),
        num_prompt=np.array([len(s[2]) if s[3] == 0 else s[3] for s in seqs], np.int32),
        adapter_ids=np.full(n, -1, np.int32),
        temperature=np.zeros(n, np.float32),
        top_p=np.ones(n, np.float32),
        top_k=np.zeros(n, np.int32),
        min_p=np.zeros(n, np.float32),
        presence_penalty=np.zeros(n, np.float32),
        frequency_penalty=np.zeros(n, np.float32),
        repetition_penalty=np.ones(n, np.float32),
        seed=np.full(n, -1, np.int64),
        logprobs=np.full(n, -1, np.int32),
        token_ids=np.array(tokens, np.int32),
        kv_pages=np.array(pages, np.int32),
        grammar_ids=np.full(n, -1, np.int32),
    )


NEW = FLAG_NEW | FLAG_SAMPLE


def test_ready_info_describes_model_and_pool(executor):
    info = executor.ready_info()
    assert info["num_pages"] == 400 and info["page_width"] == 32
    assert info["modules"]["q"] == [64, 64] and info["modules"]["down"] == [160, 64]
    assert info["eos_token_ids"] == [2]
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["max_position"] == 200  # two pages per token: the pool caps the context


def test_use_last_sampled_and_explicit_token_agree(executor):
    first = executor.step(plan(0, [(1, NEW, [5, 6, 7], 0, 0), (2, NEW, [5, 6, 7], 0, 10)]))
    t1, t2 = first.tokens.tolist()
    assert t1 == t2
    second = executor.step(
        plan(
            1,
            [(1, FLAG_SAMPLE | FLAG_USE_LAST_SAMPLED, [-1], 3, 20), (2, FLAG_SAMPLE, [t2], 3, 22)],
        )
    )
    assert second.tokens[0] == second.tokens[1]
    assert list(second.seq_ids) == [1, 2]
    assert executor.stats()["live_seqs"] == 2
    executor.step(plan(2, [], free=[1, 2]))
    assert executor.stats()["live_seqs"] == 0


def decode_plans(steps: int, **sampling) -> list[StepPlan]:
    """Two sequences: a prefill step, then `steps` decode steps on last sampled tokens."""
    last = FLAG_SAMPLE | FLAG_USE_LAST_SAMPLED
    plans = [plan(0, [(1, NEW, [5, 6, 7], 0, 0), (2, NEW, [9, 4], 0, 10)])]
    for k in range(1, steps + 1):
        plans.append(
            plan(k, [(1, last, [-1], 2 + k, 16 + 4 * k), (2, last, [-1], 1 + k, 18 + 4 * k)])
        )
    return [replace(p, **{name: np.full(p.num_seqs, value, dtype=getattr(p, name).dtype)
                          for name, value in sampling.items()}) for p in plans]  # fmt: skip


def histories(executor) -> list[list[int]]:
    return [
        executor.seqs.get(i).tokens.tolist() + [executor.seqs.get(i).last_sampled] for i in (1, 2)
    ]


@pytest.mark.parametrize("ahead", [1, 2])
@pytest.mark.parametrize("sampling", [{}, {"presence_penalty": 1.5}], ids=["greedy", "penalty"])
def test_steps_launched_before_the_last_is_read_equal_steps_one_by_one(ahead, sampling):
    # `ahead` steps are launched before the oldest is waited for: their last sampled
    # tokens come from the device (or, under a penalty, after waiting for them).
    require_fixture(TINY)
    config = InitConfig(
        model_path=str(TINY), num_pages=400, max_num_seqs=4, max_num_batched_tokens=32
    )
    one_by_one, ahead_of_reads = Executor(config), Executor(config)
    expected = [one_by_one.step(p).tokens.tolist() for p in decode_plans(6, **sampling)]
    launched, results = [], []
    for p in decode_plans(6, **sampling):
        launched.append(ahead_of_reads.launch(p))
        if len(launched) > ahead:
            results.append(launched.pop(0).wait().tokens.tolist())
    results += [step.wait().tokens.tolist() for step in launched]
    assert results == expected
    assert histories(ahead_of_reads) == histories(one_by_one)
    assert len({tuple(r) for r in expected}) > 2  # the tokens change from step to step


def test_only_sampling_rows_are_returned(executor):
    result = executor.step(plan(0, [(1, FLAG_NEW, [5, 6], 0, 0), (2, NEW, [9], 0, 10)]))
    assert list(result.seq_ids) == [2] and len(result.tokens) == 1
    chunk_only = executor.step(plan(1, [(1, 0, [7, 8], 2, 20)]))  # a prefill chunk
    assert len(chunk_only.seq_ids) == 0 and len(chunk_only.top_ids) == 0
    assert executor.seqs.get(1).num_tokens == 4


def one_seq(**fields):
    return replace(plan(0, [(1, NEW, [5], 0, 0)]), **fields)


def with_prefix(step: StepPlan, tokens: list[int], pages: list[int]) -> StepPlan:
    return replace(
        step,
        prefix_token_ids=np.array(tokens, np.int32),
        prefix_kv_pages=np.array(pages, np.int32),
    )


BAD_PLANS = {
    "unknown seq": (lambda: plan(0, [(9, FLAG_SAMPLE, [5], 3, 0)]), BadMessage, "not live"),
    "new with cache, no prefix": (lambda: plan(0, [(1, NEW, [5], 2, 0)]), BadMessage, "num_cached"),
    "prefix for a seq not new": (
        lambda: with_prefix(
            plan(0, [(7, FLAG_SAMPLE | FLAG_USE_LAST_SAMPLED, [-1], 2, 110)]), [5], [100, 101]
        ),
        BadMessage,
        "prefix_token_ids",
    ),
    "prefix page out of range": (
        lambda: with_prefix(plan(0, [(1, NEW, [6], 1, 0)]), [5], [100, 400]),
        PageOutOfRange,
        "prefix_kv_pages",
    ),
    "prefix token out of vocab": (
        lambda: with_prefix(plan(0, [(1, NEW, [6], 1, 0)]), [512], [100, 101]),
        BadMessage,
        "prefix_token_ids",
    ),
    "token out of vocab": (lambda: plan(0, [(1, NEW, [512], 0, 0)]), BadMessage, "token_ids"),
    "-1 without flag": (lambda: plan(0, [(1, NEW, [-1], 0, 0)]), BadMessage, "token_ids"),
    "last sampled never sampled": (
        lambda: plan(0, [(1, NEW | FLAG_USE_LAST_SAMPLED, [-1], 0, 0)]),
        BadMessage,
        "no sampled token",
    ),
    "too many seqs": (
        lambda: plan(0, [(i, NEW, [5], 0, 10 * i) for i in range(5)]),
        CapacityExceeded,
        "max_num_seqs",
    ),
    "too many tokens": (
        lambda: plan(0, [(1, NEW, [5] * 33, 0, 0)]),
        CapacityExceeded,
        "max_num_batched_tokens",
    ),
    "page out of range": (lambda: plan(0, [(1, NEW, [5], 0, 399)]), PageOutOfRange, "kv_pages"),
    "repeated seq": (
        lambda: plan(0, [(1, NEW, [5], 0, 0), (1, NEW, [5], 0, 4)]),
        BadMessage,
        "repeat",
    ),
    "short array": (lambda: one_seq(top_p=np.ones(2, np.float32)), BadMessage, "top_p"),
    "bad top_p": (lambda: one_seq(top_p=np.zeros(1, np.float32)), BadMessage, "top_p"),
    "too many logprobs": (
        lambda: one_seq(logprobs=np.array([21], np.int32)),
        BadMessage,
        "logprobs",
    ),
    "unknown adapter": (
        lambda: one_seq(adapter_ids=np.array([3], np.int32)),
        UnknownAdapter,
        "adapter 3",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PLANS))
def test_bad_plan_fails_by_name_and_keeps_state(executor, case):
    executor.step(plan(0, [(7, NEW, [5, 6], 0, 100)]))
    before = executor.seqs.get(7).num_tokens, executor.seqs.get(7).last_sampled
    make, error, message = BAD_PLANS[case]
    with pytest.raises(error, match=message):
        executor.step(make())
    assert executor.stats()["live_seqs"] == 1
    assert (executor.seqs.get(7).num_tokens, executor.seqs.get(7).last_sampled) == before
    # the executor still serves the next good step
    executor.step(plan(1, [(7, FLAG_SAMPLE | FLAG_USE_LAST_SAMPLED, [-1], 2, 110)]))


def test_failed_step_discards_its_new_sequences(executor):
    good_new = (1, NEW, [5, 6], 0, 0)
    mismatched = (7, FLAG_SAMPLE, [5], 99, 10)  # 7 is not live
    with pytest.raises(BadMessage):
        executor.step(plan(0, [good_new, mismatched]))
    assert 1 not in executor.seqs and executor.stats()["live_seqs"] == 0


def test_seeded_sampling_is_reproducible_across_batches(executor):
    def run(others):
        driver = Driver(executor)
        reqs = [Request([5, 6, 7], max_new_tokens=6, temperature=1.0, seed=11)] + [
            Request([9, 10], max_new_tokens=4, temperature=1.0) for _ in range(others)
        ]
        return driver.generate(reqs)[0].tokens

    assert run(0) == run(3)


def test_stats_count_adapters_seqs_and_steps(executor):
    staged = executor.stage_adapter(4, str(ROOT / "adapters" / "tiny-r4"))
    executor.load_adapter(4, np.arange(staged.num_pages, dtype=np.int32) + 200)
    executor.step(plan(0, [(1, NEW, [5], 0, 0)]))
    stats = executor.stats()
    assert stats["host_cache_adapters"] == 1 and stats["pool_adapters"] == 1
    assert stats["host_cache_bytes"] == staged.host_bytes
    assert stats["live_seqs"] == 1 and stats["steps"] == 1
    assert stats["device_memory_bytes"] >= executor.pool.nbytes
    executor.drop_adapter(4, "pool")
    assert executor.stats()["pool_adapters"] == 0 and executor.stats()["host_cache_adapters"] == 1
    executor.drop_adapter(4, "host")
    assert executor.stats()["host_cache_adapters"] == 0
    with pytest.raises(UnknownAdapter):
        executor.drop_adapter(4, "host")
    with pytest.raises(BadMessage, match="tier"):
        executor.drop_adapter(4, "disk")


def test_init_refuses_bad_config_by_name(tmp_path):
    with pytest.raises(BadMessage, match="dtype"):
        Executor(InitConfig(model_path=str(TINY), dtype="int8"))
    with pytest.raises(BadMessage, match="gpu_memory_utilization"):
        Executor(InitConfig(model_path=str(TINY), gpu_memory_utilization=1.5))
    with pytest.raises(ModelInvalid, match="config.json is missing"):
        Executor(InitConfig(model_path=str(tmp_path), num_pages=10))


def test_generate_cli_reports_a_run(executor, capsys):
    from lorafleet_reference.generate_cli import main

    adapter = str(ROOT / "adapters" / "tiny-r8")
    args = ["--model", str(TINY), "--adapter", adapter, "--num-pages", "2000", "--requests", "3"]
    report = main([*args, "--max-new-tokens", "4", "--prompt-len", "10", "--base-share", "0.5"])
    assert report["generated_tokens"] == 12 and report["steps"] == 4
    assert '"output_tokens_per_s"' in capsys.readouterr().out


def test_penalties_see_the_sequence_history_across_steps(executor):
    driver = Driver(executor)
    plain, penalized = driver.generate(
        [
            Request([5, 6, 7], max_new_tokens=16),
            Request([5, 6, 7], max_new_tokens=16, presence_penalty=50.0),
        ]
    )
    assert len(set(penalized.tokens)) == 16  # an output token never comes back
    assert len(set(plain.tokens)) < 16  # ... which greedy alone does not give


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
        grammar_ids=per_seq(-1, np.int32),
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


def samples(result) -> dict[int, tuple[int, float]]:
    """seq id -> (sampled token, its logprob) of a step result."""
    rows = zip(result.tokens.tolist(), result.logprobs.tolist(), strict=True)
    return dict(zip(result.seq_ids.tolist(), rows, strict=True))


ADAPTER_ID = 3


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
    computes the rest; `alone` computes all of it itself. Then both decode `steps` tokens,
    each step fed the token `alone` sampled (so a bf16 near-tie changes one sample, not
    every one after it). Returns each one's (token, logprob) per step."""
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
    assert executor.seqs.get(reader).tokens.tolist() == PROMPT
    outcome = {reader: [samples(first)[reader]], alone: [samples(first)[alone]]}
    for k in range(steps):
        token = outcome[alone][-1][0]
        rows = [Row(s, FLAG_SAMPLE, [token], n + k, pages.take(1), n, adapter_id=adapter_id)
                for s in (reader, alone)]  # fmt: skip
        sampled = samples(executor.step(step_plan(10 + k, rows, penalty)))
        for seq_id in (reader, alone):
            outcome[seq_id].append(sampled[seq_id])
    for seq_id in (writer, reader, alone):
        executor.seqs.free(seq_id)
    return outcome[reader], outcome[alone]


@pytest.fixture(scope="module")
def with_adapter():
    return prefix_executor()


@pytest.mark.parametrize(("same_step", "penalty", "adapter_id", "num_cached"), CASES)
def test_a_cached_prefix_yields_what_computing_it_yields(
    with_adapter, same_step, penalty, adapter_id, num_cached
):
    reader, alone = reuse_outcome(with_adapter, same_step, penalty, adapter_id, num_cached)
    assert [token for token, _ in reader] == [token for token, _ in alone]
    assert [lp for _, lp in reader] == pytest.approx([lp for _, lp in alone], abs=1e-5)
    assert len({token for token, _ in alone}) > 1  # the tokens change from step to step
