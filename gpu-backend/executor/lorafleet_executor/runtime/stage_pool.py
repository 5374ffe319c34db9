"""Adapter staging on a small pool of threads, with per-adapter ordering.

Staging (read safetensors, check, pack into pinned memory) is CPU work that releases
the GIL inside torch and safetensors, and it is what a request for a cold adapter waits
for: staging several adapters at once shortens the queue behind a burst of new ones.
Loads and drops stay in order on the server's adapter thread; they call `wait_for`
first, so a load (or drop) of adapter X never starts before X's staging is done, even
if the engine sent it early. Two stages of the same id run one after the other.

Example:
    pool = StagePool(threads=4)
    pool.submit(7, lambda: stage_and_reply(7))
    pool.wait_for(7)   # returns once adapter 7's staging (if any) has finished
    pool.shutdown()    # runs what was submitted, then returns
"""

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait


class StagePool:
    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"a stage pool needs at least one thread, got {threads}")
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="stage")
        self._lock = threading.Lock()
        self._pending: dict[int, Future] = {}

    def submit(self, adapter_id: int, run: Callable[[], None]) -> None:
        """Runs `run` on a pool thread after any earlier staging of the same adapter.

        `run` must not raise (the server's handlers turn failures into replies); one
        failing stage leaves the others alone either way.
        """
        with self._lock:
            before = self._pending.get(adapter_id)
            future = self._pool.submit(_after, before, run)
            self._pending[adapter_id] = future
        # Outside the lock: a future already done runs its callback right here.
        future.add_done_callback(lambda done: self._forget(adapter_id, done))

    def wait_for(self, adapter_id: int) -> None:
        with self._lock:
            pending = self._pending.get(adapter_id)
        if pending is not None:
            wait([pending])

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

    def _forget(self, adapter_id: int, done: Future) -> None:
        with self._lock:
            if self._pending.get(adapter_id) is done:
                del self._pending[adapter_id]


def _after(before: Future | None, run: Callable[[], None]) -> None:
    # FIFO pool: `before` was submitted first, so it is running or done, never queued
    # behind us; waiting on it cannot deadlock even with one thread.
    if before is not None:
        wait([before])
    run()
