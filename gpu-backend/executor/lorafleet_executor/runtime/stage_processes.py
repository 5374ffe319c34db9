"""Adapter staging in worker processes, out of the step loop's way.

Reading, checking and packing an adapter is CPU work (~10-60 ms at 7B shapes), and in the
step loop's process it shares the GIL and the cores with it: on the H100 one staging
thread doubled an eager decode step and four made it 10x slower (bench/gpu/cold_load.py,
`while_staging`). Workers parse with `parse_adapter` straight into the host-tier buffer
the executor lends them (host_buffers.py: shared memory, pinned on a GPU), so the rows
the executor gets back are already where the host tier keeps them: no copy, no
allocation. Each worker keeps every buffer it was lent mapped (torch.multiprocessing's
tensor pickling maps a buffer the first time; mapping and first touching a fresh 7B
segment cost ~20 ms), until the executor no longer holds it.

Example:
    stagers = StageProcesses(workers=2)
    config = read_adapter_config("/adapters/a", cfg, max_rank=64)
    buffer = buffers.take(packed_bytes(config, cfg, torch.bfloat16))
    adapter = stagers.parse(7, "/adapters/a", cfg, 64, torch.bfloat16, config, buffer,
                            live=buffers.live_ids())
    stagers.shutdown()
"""

import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch
import torch.multiprocessing

from ..errors import ExecutorError
from ..model.adapters import AdapterConfig, ParsedAdapter, parse_adapter
from ..model.config import ModelConfig
from .host_buffers import HostBuffer

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
        config: AdapterConfig,
        buffer: HostBuffer,
        live: list[int],
    ) -> ParsedAdapter:
        """`parse_adapter` in a worker (`config`: its adapter_config.json, read already),
        packed into `buffer` (its rows are a view of it); its AdapterInvalid comes back as
        raised there. `live`: ids of the buffers the executor still holds; the worker
        unmaps the others."""
        pool = self._pool
        args = (adapter_id, path, cfg, max_rank, dtype)
        try:
            return pool.submit(_parse_into, buffer.id, buffer.data, live, config, *args).result()
        except BrokenProcessPool as error:
            # A worker died (killed, out of memory): the pool is unusable; the next
            # stage gets a fresh one.
            if self._pool is pool:
                self._pool = self._start()
            raise ExecutorError(f"staging adapter {adapter_id}: a worker died ({error})") from None

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


# In a worker: every buffer lent to it, by id. Holding one keeps it mapped, so the next
# stage lent the same buffer finds it in torch.multiprocessing's cache instead of mapping
# and faulting in its pages again.
_mapped: dict[int, torch.Tensor] = {}


def _parse_into(
    buffer_id: int, buffer: torch.Tensor, live: list[int], config: AdapterConfig, *args
) -> ParsedAdapter:
    for gone in set(_mapped) - set(live):
        del _mapped[gone]
    _mapped[buffer_id] = buffer
    return parse_adapter(*args, out=buffer, config=config)


def _start_worker(workers: int) -> None:
    os.nice(WORKER_NICENESS)
    # Each worker's intra-op threads share the machine with the others and the step
    # loop: a few each speed up packing without crowding the cores.
    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 1) // (workers + 1))))
