"""StagePool: stages overlap, per-adapter order holds, wait_for waits. Timing-free:
a blocked stage waits on an event only the test sets, after its checks (in `finally`,
so a failing check does not leave a pool thread behind), so a pool that ran stages one
at a time, or a wait_for that waited for another adapter, fails the check by TIMEOUT
instead of passing once the blocked stage gives up."""

import threading

import pytest

from lorafleet_executor.runtime.stage_pool import StagePool

TIMEOUT = 10


def test_stages_of_different_adapters_overlap():
    pool = StagePool(threads=2)
    release_first, second_ran = threading.Event(), threading.Event()
    pool.submit(1, release_first.wait)
    try:
        pool.submit(2, second_ran.set)
        # The first stage is blocked until the test ends: only a second thread can run this.
        assert second_ran.wait(TIMEOUT)
    finally:
        release_first.set()
        pool.shutdown()


def test_stages_of_one_adapter_run_in_order_and_wait_for_waits_for_the_last():
    pool = StagePool(threads=4)
    order: list[str] = []
    release = threading.Event()
    pool.submit(7, lambda: (release.wait(TIMEOUT), order.append("first")))
    pool.submit(7, lambda: order.append("second"))
    waited = threading.Event()
    waiter = threading.Thread(target=lambda: (pool.wait_for(7), waited.set()))
    waiter.start()
    assert not waited.wait(0.2)  # both stages are pending
    assert order == []
    release.set()
    waiter.join(TIMEOUT)
    assert waited.is_set() and order == ["first", "second"]
    pool.shutdown()


def test_wait_for_an_adapter_with_no_staging_returns_at_once():
    pool = StagePool(threads=1)
    blocker, waited = threading.Event(), threading.Event()
    pool.submit(1, blocker.wait)  # adapter 1's stage holds the only thread until released
    try:
        waiter = threading.Thread(target=lambda: (pool.wait_for(2), waited.set()), daemon=True)
        waiter.start()
        # Adapter 2 has nothing pending: waiting for it must not wait for adapter 1's stage.
        assert waited.wait(TIMEOUT), "wait_for(2) blocked behind adapter 1's staging"
    finally:
        blocker.set()
        pool.shutdown()


def test_shutdown_runs_what_was_submitted():
    pool = StagePool(threads=2)
    done = []
    for i in range(6):
        pool.submit(i, lambda i=i: done.append(i))
    pool.shutdown()
    assert sorted(done) == list(range(6))


def test_a_pool_needs_a_thread():
    with pytest.raises(ValueError, match="at least one thread"):
        StagePool(threads=0)
