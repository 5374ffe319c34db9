"""Starting the ranks of a tensor-parallel group on one host.

The protocol server (rank 0) starts ranks 1..N-1 as `python -m
lorafleet_executor.runtime.worker` subprocesses that die with it; tests and benchmarks
run a function on N fresh processes with `run_group`.

Example:
    results = run_group(generate_on_rank, 2, config)  # [rank 0's result, rank 1's]
"""

import os
import pickle
import queue
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp

from .group import TensorGroup


def local_init_method() -> str:
    """A TCP rendezvous on a free loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def use_rank_device(rank: int) -> None:
    """Rank r computes on GPU r (torch.device("cuda") then means it)."""
    if torch.cuda.is_available():
        torch.cuda.set_device(rank % torch.cuda.device_count())


def spawn_workers(size: int, init_method: str, log_level: str) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lorafleet_executor.runtime.worker",
                "--rank",
                str(rank),
                "--world-size",
                str(size),
                "--init-method",
                init_method,
                "--parent-pid",
                str(os.getpid()),
                "--log-level",
                log_level,
            ]
        )
        for rank in range(1, size)
    ]


def run_group(fn: Callable[..., Any], size: int, *args: Any, timeout: float = 300) -> list[Any]:
    """fn(group, *args) on `size` fresh processes; their return values by rank.

    A rank that raises fails the call with its traceback. fn must be importable by name
    (a module-level function), as spawned processes import it.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    init_method = local_init_method()
    procs = [
        ctx.Process(target=_rank_main, args=(fn, rank, size, init_method, results, args))
        for rank in range(size)
    ]
    for p in procs:
        p.start()
    by_rank: dict[int, Any] = {}
    try:
        for _ in range(size):
            rank, ok, value = results.get(timeout=timeout)
            if not ok:
                raise RuntimeError(f"rank {rank} failed:\n{value}")
            by_rank[rank] = pickle.loads(value)
    except queue.Empty as e:
        raise TimeoutError(f"the group did not finish in {timeout} s") from e
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return [by_rank[r] for r in range(size)]


def _rank_main(fn, rank, size, init_method, results, args) -> None:
    torch.set_num_threads(1)
    use_rank_device(rank)
    try:
        group = TensorGroup.join(rank, size, init_method)
        try:
            # Pickled here, by value: torch's queue would share a tensor's storage through
            # a file descriptor this process must still hold when the parent takes it,
            # and the rank exits right after.
            results.put((rank, True, pickle.dumps(fn(group, *args))))
        finally:
            group.leave()
    except BaseException:
        results.put((rank, False, traceback.format_exc()))
