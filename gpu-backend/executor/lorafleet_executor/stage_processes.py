"""Adapter staging in worker processes, out of the step loop's way.

Reading, checking and packing an adapter is 20-60 ms of CPU work at 7B shapes, and in
the step loop's process it shares the GIL and the cores with it: on the H100 one staging
thread doubled an eager decode step and four made it 10x slower
(bench/gpu/cold_load.py, `while_staging`). Workers parse with `parse_adapter` and hand
the packed rows back in shared memory (torch.multiprocessing's tensor pickling); the
executor copies them into pinned memory, one bulk copy.

Example:
    stagers = StageProcesses(workers=2)
    adapter = stagers.parse(7, "/adapters/a", cfg, max_rank=64, dtype=torch.bfloat16,
                            pin=True)
    stagers.shutdown()
"""

import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch
import torch.multiprocessing

from .adapters import ParsedAdapter, parse_adapter
from .config import ModelConfig
from .errors import ExecutorError

# Workers run below the executor's priority: when cores are short, steps go first.
WORKER_NICENESS = 5


class StageProcesses:
    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"staging needs at least one worker process, got {workers}")
        self.workers = workers
        self._pool = self._start()

    def parse(
        self,
        adapter_id: int,
        path: str | Path,
        cfg: ModelConfig,
        max_rank: int,
        dtype: torch.dtype,
        pin: bool,
    ) -> ParsedAdapter:
        """`parse_adapter` in a worker; its AdapterInvalid comes back as raised there."""
        pool = self._pool
        try:
            adapter = pool.submit(parse_adapter, adapter_id, path, cfg, max_rank, dtype).result()
        except BrokenProcessPool as error:
            # A worker died (killed, out of memory): the pool is unusable; the next
            # stage gets a fresh one.
            if self._pool is pool:
                self._pool = self._start()
            raise ExecutorError(f"staging adapter {adapter_id}: a worker died ({error})") from None
        if pin:
            pinned = torch.empty_like(adapter.rows, pin_memory=True)
            adapter.rows = pinned.copy_(adapter.rows)
        return adapter

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            self.workers,
            # spawn: the executor holds a CUDA context, which a fork cannot carry.
            mp_context=torch.multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.workers,),
        )
        # Workers start on demand and take seconds (Python, torch): start them now, not
        # in the first cold adapter's latency.
        for _ in range(self.workers):
            pool.submit(os.getpid)
        return pool


def _start_worker(workers: int) -> None:
    os.nice(WORKER_NICENESS)
    # Each worker's intra-op threads share the machine with the others and the step
    # loop: a few each speed up packing without crowding the cores.
    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 1) // (workers + 1))))
