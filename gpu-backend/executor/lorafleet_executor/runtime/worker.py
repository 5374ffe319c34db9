"""A worker rank (1..N-1) of a tensor-parallel executor.

    python -m lorafleet_executor.runtime.worker --rank 1 --world-size 2 \\
        --init-method tcp://127.0.0.1:29500 --parent-pid 4242

Rank 0 (the protocol server) starts it. It has no socket: it receives every message
rank 0 acts on over the group's control channel and carries it out on its own share,
with the same two threads as the server (steps in order; adapter work in order), so
every collective meets its twin on rank 0. It answers nothing: rank 0 answers the
engine. It ends when rank 0 sends `shutdown` (exit 0) or is gone (exit 0; it is also
killed with its parent on Linux).
"""

import argparse
import ctypes
import logging
import os
import queue
import signal
import sys
import threading
from typing import Any

from ..parallel.group import TensorGroup
from ..parallel.launch import use_rank_device

log = logging.getLogger("lorafleet_executor.runtime.worker")

PR_SET_PDEATHSIG = 1


def make_rank_executor(config: Any, group: TensorGroup, grammar: Any = None) -> Any:
    """One rank's Executor; fails on every rank when it fails on any. Only rank 0 samples,
    so only its `grammar` options matter."""
    from .executor import Executor

    executor, error = None, None
    try:
        executor = Executor(config, group, grammar=grammar)
    except Exception as e:
        error = e
    group.agree(error)
    return executor


class Worker:
    def __init__(self, group: TensorGroup) -> None:
        self.group = group
        self.executor: Any = None
        self.queues: dict[str, queue.Queue] = {"step": queue.Queue(), "adapter": queue.Queue()}
        self.threads = [
            threading.Thread(target=self._work, args=(q,), name=name, daemon=True)
            for name, q in self.queues.items()
        ]

    def run(self) -> int:
        for thread in self.threads:
            thread.start()
        while True:
            try:
                message = self.group.receive_message()
            except RuntimeError as error:
                log.info("rank %d: rank 0 is gone (%s); exiting", self.group.rank, error)
                return 0
            if message.name == "shutdown":
                for work in self.queues.values():
                    work.put(None)
                for thread in self.threads:
                    thread.join()
                return 0
            if message.name == "init":
                self._carry_out(message)
            elif message.name == "step":
                self.queues["step"].put(message)
            else:
                self.queues["adapter"].put(message)

    def _work(self, work: "queue.Queue[Any]") -> None:
        while (message := work.get()) is not None:
            self._carry_out(message)

    def _carry_out(self, message: Any) -> None:
        body = message.body
        try:
            if message.name == "init":
                self.executor = make_rank_executor(body, self.group)
            elif message.name == "step":
                self.executor.step(body)
            elif message.name == "stage_adapter":
                self.executor.stage_adapter(body.adapter_id, body.path)
            elif message.name == "load_adapter":
                self.executor.load_adapter(body.adapter_id, body.pages)
            else:
                self.executor.drop_adapter(body.adapter_id, body.tier)
        except Exception as error:
            # Rank 0 meets the same error (the plan and the state are the same) and
            # answers the engine; here it is only logged.
            log.warning("rank %d: %s failed: %s", self.group.rank, message.name, error)


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lorafleet_executor.runtime.worker")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--init-method", required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    _die_with_parent(args.parent_pid)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format=f"executor rank {args.rank} %(levelname)s %(message)s",
    )
    use_rank_device(args.rank)
    group = TensorGroup.join(args.rank, args.world_size, args.init_method)
    code = Worker(group).run()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
