"""The executor with a fault injected, for the backend's failure-isolation tests: it
serves as the product does until a step starts a sequence whose first token is the
chosen one, and then that step hangs, the process crashes, or the step fails.

    python -m lorafleet_reference.faulty_executor --fault hang|crash|error --on-token N \\
        --socket PATH [the executor's flags]

Tests start it in place of `python -m lorafleet_executor` through a wrapper given as the
backend's `--python` (gpu-backend/src/executor/test-fixtures.ts `pythonWithFault`).
The product has no way to reach it: the fault lives in this package, which the product
never imports, and only this entry point puts it around the executor (through
runtime/server.py's `make_executor` seam); no message or flag of the product's does.

A hang blocks the step thread only: the reader still answers `stats`, as a step stuck
in a kernel would leave it. A crash is a SIGSEGV, as a fault in native code ends the
process. An error is an exception inside the step, answered as `internal`.
"""

import argparse
import os
import signal
import threading
from typing import Any

import numpy as np

from lorafleet_executor.protocol.messages import FLAG_NEW, StepPlan
from lorafleet_executor.runtime import server

FAULTS = ("hang", "crash", "error")


class FaultyExecutor:
    """The real executor (every attribute passes through) whose `launch` fails on a plan
    that starts a sequence with `token`."""

    def __init__(self, executor: Any, fault: str, token: int) -> None:
        self._executor = executor
        self._fault = fault
        self._token = token

    def launch(self, plan: StepPlan) -> Any:
        if self._starts_with_token(plan):
            self._fail(plan.step_id)
        return self._executor.launch(plan)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._executor, name)

    def _starts_with_token(self, plan: StepPlan) -> bool:
        starts = np.concatenate([[0], np.cumsum(plan.num_new_tokens)[:-1]]).astype(np.int64)
        new = (plan.flags & FLAG_NEW) != 0
        firsts = plan.token_ids[starts[new & (plan.num_new_tokens > 0)]]
        return bool(np.any(firsts == self._token))

    def _fail(self, step_id: int) -> None:
        if self._fault == "hang":
            threading.Event().wait()
        elif self._fault == "crash":
            signal.raise_signal(signal.SIGSEGV)
            os._exit(128 + signal.SIGSEGV)  # were SIGSEGV handled: end as it would
        raise RuntimeError(f"fault injected into step {step_id}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lorafleet_reference.faulty_executor", allow_abbrev=False
    )
    parser.add_argument("--fault", choices=FAULTS, required=True)
    parser.add_argument("--on-token", type=int, required=True, dest="token")
    args, executor_argv = parser.parse_known_args(argv)

    def make_executor(config: Any, tp: Any, stage_threads: int, grammar: Any) -> FaultyExecutor:
        real = server._make_executor(config, tp, stage_threads, grammar)
        return FaultyExecutor(real, args.fault, args.token)

    server.main(executor_argv, make_executor=make_executor)


if __name__ == "__main__":
    main()
