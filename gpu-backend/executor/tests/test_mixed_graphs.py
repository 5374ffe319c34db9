"""Mixed-step CUDA graphs' inputs: token buckets, pieces of at most BLOCK rows, and the
padded batch computing what the eager step computes (on CPU, with the torch kernels;
the captured graphs themselves are compared with eager steps in test_executor_gpu.py)."""

import os

import numpy as np
import pytest
from fixture_skip import require_fixture
from hypothesis import given
from hypothesis import strategies as st

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.graphs.mixed import BLOCK, PaddedMixedBatch, split_ranges, token_buckets
from lorafleet_executor.model.lora_batch import GROUPS, targeted_groups
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"


def test_token_buckets_step_by_powers_of_two_and_midpoints():
    assert token_buckets(2048) == [128, 192, 256, 384, 512, 768, 1024, 1536, 2048]
    assert token_buckets(600) == [128, 192, 256, 384, 512, 600]
    assert token_buckets(100) == [100]


@given(st.lists(st.integers(1, 300), min_size=1, max_size=40), st.sampled_from([1, 7, 64]))
def test_split_ranges_cuts_each_range_from_its_start(lengths, block):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    pieces, owner = split_ranges(offsets, block)
    sizes = np.diff(pieces)
    assert pieces[0] == 0 and pieces[-1] == offsets[-1]
    assert (sizes >= 1).all() and (sizes <= block).all()
    # every piece lies inside its range and starts a multiple of `block` into it
    assert ((pieces[:-1] - offsets[owner]) % block == 0).all()
    assert (pieces[1:] <= offsets[owner + 1]).all()
    # the bound the graphs' grids rely on: T // block + one short piece per range
    assert len(owner) <= offsets[-1] // block + len(lengths)


def generate(executor: Executor, requests: list[Request]):
    driver = Driver(executor, chunk_size=100)
    for adapter_id, name in ((10, "tiny-r8"), (11, "tiny-r64"), (12, "tiny-mix-09")):
        driver.add_adapter(adapter_id, str(ROOT / "adapters" / name))
    return driver.generate(requests)


def through_padded_batch(executor: Executor, groups_of) -> None:
    """Runs the executor's prefill and mixed steps on the padded batch of its bucket."""
    buckets = token_buckets(executor.config.max_num_batched_tokens)
    padded = PaddedMixedBatch(
        executor.model,
        executor.pool,
        executor.seqs,
        executor.config.max_num_seqs,
        buckets[-1],
        executor.config.max_lora_rank,
    )
    eager = executor._pack_forward

    def pack_forward(inputs, packing):
        if inputs.max_q == 1:
            return eager(inputs, packing)
        bucket = next(b for b in buckets if b >= len(inputs.token_ids))
        fill = padded.pack(inputs, bucket, packing)

        def forward(sent):
            fill(sent)
            batch = padded.batch(bucket, groups_of(inputs))
            return executor.model.forward(executor.pool, batch)[: len(inputs.logits_rows)]

        return forward

    executor._pack_forward = pack_forward


@pytest.mark.parametrize(
    "groups_of",
    [lambda inputs: targeted_groups(inputs.slots), lambda _: frozenset(GROUPS)],
    ids=["step's groups", "all groups"],
)
def test_padded_pieces_compute_what_the_eager_step_computes(groups_of):
    require_fixture(TINY)
    rng = np.random.default_rng(3)
    # prompts past BLOCK, chunks of 100: sequences and adapter runs are cut into pieces
    requests = [
        Request(
            prompt=rng.integers(3, 500, size=int(n)).tolist(),
            adapter_id=a,
            max_new_tokens=6,
            logprobs=3,
        )
        for n, a in zip((150, 70, 9, 130, 40), (10, 11, -1, 12, 10), strict=True)
    ]
    config = InitConfig(model_path=str(TINY), num_pages=4000, max_num_seqs=8,
                        max_num_batched_tokens=320, max_lora_rank=64)  # fmt: skip
    eager = generate(Executor(config), requests)
    executor = Executor(config)
    through_padded_batch(executor, groups_of)
    padded = generate(executor, requests)
    assert BLOCK < 150
    for a, b in zip(eager, padded, strict=True):
        assert a.tokens == b.tokens
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
