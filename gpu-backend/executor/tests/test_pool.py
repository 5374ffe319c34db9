"""Unified Paging: adapters and KV in interleaved pages of one pool; evict + reload."""

import os

import numpy as np
import pytest
import torch
from fixture_skip import require_fixture

from lorafleet_executor.errors import BadMessage, PageOutOfRange, UnknownAdapter
from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.model.pool import UnifiedPool, pages_for_budget
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"
ADAPTERS = ROOT / "adapters"


@pytest.fixture
def executor():
    require_fixture(TINY)
    ex = Executor(InitConfig(model_path=str(TINY), num_pages=3000, max_num_batched_tokens=64))
    ex.pool.data.fill_(float("nan"))  # a read of a page nobody wrote poisons the logits
    return ex


def requests(adapter_ids, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Request(prompt=rng.integers(3, 500, size=12 + 5 * i).tolist(), adapter_id=a,
                max_new_tokens=12, logprobs=3)
        for i, a in enumerate(adapter_ids)
    ]  # fmt: skip


def test_load_writes_host_rows_into_exactly_the_given_pages(executor):
    staged = executor.stage_adapter(5, str(ADAPTERS / "tiny-r8"))
    pages = np.random.default_rng(1).permutation(executor.pool.num_pages)[: staged.num_pages]
    before = executor.pool.data.clone()
    executor.load_adapter(5, pages.astype(np.int32))
    host = executor.host.get(5).rows
    torch.testing.assert_close(executor.pool.data[:, pages], host, rtol=0, atol=0)
    untouched = np.setdiff1d(np.arange(executor.pool.num_pages + 1), pages)
    assert torch.equal(executor.pool.data[:, untouched].isnan(), before[:, untouched].isnan())


def test_adapters_and_kv_interleave_and_reload_elsewhere_gives_identical_outputs(executor):
    driver = Driver(executor, chunk_size=8, page_seed=11)
    driver.add_adapter(1, str(ADAPTERS / "tiny-r16-rslora"))
    driver.add_adapter(2, str(ADAPTERS / "tiny-mix-11"))
    first_pages = driver.adapter_pages[1].copy()
    first = driver.generate(requests([1, 2, -1, 1]))

    driver.evict_adapter(1)
    with pytest.raises(UnknownAdapter):
        driver.generate(requests([1]))
    # churn: other sequences take pages, then adapter 1 comes back into different pages
    driver.generate(requests([2, -1], seed=5))
    hold = driver.pages.allocate(37)
    driver.load_adapter(1, executor.host.get(1).num_pages)
    assert not np.array_equal(driver.adapter_pages[1], first_pages)
    driver.pages.free(hold)

    again = driver.generate(requests([1, 2, -1, 1]))
    for a, b in zip(first, again, strict=True):
        assert a.tokens == b.tokens
        assert a.logprobs == b.logprobs  # bit-identical: same math, other pages


def test_kv_pages_of_a_step_interleave_with_adapter_pages(executor):
    staged = executor.stage_adapter(3, str(ADAPTERS / "tiny-r4"))
    # the adapter takes every even page; the sequences' KV the odd ones
    adapter_pages = np.arange(0, 2 * staged.num_pages, 2, dtype=np.int32)
    executor.load_adapter(3, adapter_pages)
    driver = Driver(executor, page_seed=None)
    first = driver.pages.allocate(2 * staged.num_pages)
    driver.pages.free(first[1::2])  # the odd pages go out first, between the adapter's
    interleaved = driver.generate(requests([3, -1]))
    assert driver.pages.num_free == executor.pool.num_pages - staged.num_pages

    apart = Executor(InitConfig(model_path=str(TINY), num_pages=3000, max_num_batched_tokens=64))
    apart.stage_adapter(3, str(ADAPTERS / "tiny-r4"))
    separate = Driver(apart, page_seed=None)
    separate.load_adapter(3, staged.num_pages)
    contiguous = separate.generate(requests([3, -1]))
    for a, b in zip(interleaved, contiguous, strict=True):
        assert a.tokens == b.tokens and a.logprobs == b.logprobs


def test_load_checks_pages_before_touching_the_pool(executor):
    staged = executor.stage_adapter(4, str(ADAPTERS / "tiny-r4"))
    before = executor.pool.data.clone()
    bad = np.arange(staged.num_pages, dtype=np.int32)
    bad[-1] = executor.pool.num_pages  # the scratch page is not the engine's
    with pytest.raises(PageOutOfRange):
        executor.load_adapter(4, bad)
    with pytest.raises(BadMessage, match="needs"):
        executor.load_adapter(4, bad[:-1])
    with pytest.raises(UnknownAdapter):
        executor.load_adapter(99, bad)
    assert torch.equal(executor.pool.data.isnan(), before.isnan())
    assert 4 not in executor.placed


def test_pool_layout_and_budget():
    pool = UnifiedPool(3, 10, 32, torch.float16, torch.device("cpu"))
    assert pool.data.shape == (3, 11, 32) and pool.scratch_page == 10
    assert pool.layer(1).is_contiguous() and pool.layer(1).shape == (11, 32)
    # one page = a W-row in every layer: 3 * 32 * 2 bytes; one page is the scratch page
    assert pages_for_budget(3 * 32 * 2 * 101, 3, 32, torch.float16) == 100
