"""Adapter staging in worker processes, out of the step loop's way.

Reading, checking and packing an adapter is 20-60 ms of CPU work at 7B shapes, and in
the step loop's process it shares the GIL and the cores with it: on the H100 one staging
thread doubled an eager decode step and four made it 10x slower
(bench/gpu/cold_load.py, `while_staging`). Workers parse with `parse_adapter` and pack
the rows into a transfer buffer of shared memory that this process lends them, one per
stage in flight and reused (torch.multiprocessing's tensor pickling maps it; a fresh
segment per adapter cost ~20 ms of creating and first touching its pages at 7B); the
executor copies the rows out into pinned memory, one bulk copy, and lends the buffer
again. An adapter bigger than the buffer comes back in fresh shared memory, and the
buffer grows to it.

Example:
    stagers = StageProcesses(workers=2)
    adapter = stagers.parse(7, "/adapters/a", cfg, max_rank=64, dtype=torch.bfloat16,
                            pin=True)
    stagers.shutdown()
"""

import os
import queue
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch
import torch.multiprocessing

from ..errors import ExecutorError
from ..model.adapters import ParsedAdapter, parse_adapter
from ..model.config import ModelConfig

# Workers run below the executor's priority: when cores are short, steps go first.
WORKER_NICENESS = 5


class StageProcesses:
    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"staging needs at least one worker process, got {workers}")
        self.workers = workers
        self._pool = self._start()
        # (slot, buffer): as many as stages can be in flight (one per staging thread)
        self._buffers: queue.Queue[tuple[int, torch.Tensor]] = queue.Queue()
        for slot in range(workers):
            self._buffers.put((slot, torch.empty(0, dtype=torch.uint8)))

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
        slot, buffer = self._buffers.get()
        try:
            adapter = pool.submit(
                _parse_into, slot, buffer, adapter_id, path, cfg, max_rank, dtype
            ).result()
            packed = adapter.rows
            if packed.untyped_storage().data_ptr() != buffer.untyped_storage().data_ptr():
                buffer = torch.empty(adapter.host_bytes, dtype=torch.uint8).share_memory_()
            # Out of the buffer before it is lent again.
            adapter.rows = torch.empty_like(packed, pin_memory=pin).copy_(packed)
            return adapter
        except BrokenProcessPool as error:
            # A worker died (killed, out of memory): the pool is unusable; the next
            # stage gets a fresh one.
            if self._pool is pool:
                self._pool = self._start()
            raise ExecutorError(f"staging adapter {adapter_id}: a worker died ({error})") from None
        finally:
            self._buffers.put((slot, buffer))

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


# In a worker: the buffers lent to it, by slot. Holding one keeps it mapped, so the next
# stage lent the same buffer finds it in torch.multiprocessing's cache instead of mapping
# and faulting in its pages again.
_lent: dict[int, torch.Tensor] = {}


def _parse_into(slot: int, buffer: torch.Tensor, *args) -> ParsedAdapter:
    _lent[slot] = buffer
    return parse_adapter(*args, out=buffer)


def _start_worker(workers: int) -> None:
    os.nice(WORKER_NICENESS)
    # Each worker's intra-op threads share the machine with the others and the step
    # loop: a few each speed up packing without crowding the cores.
    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 1) // (workers + 1))))
