"""The executor process's options: its command line only, parsed once at start into one
checked record that the server passes down; nothing below reads the environment. The
flags are named as the backend's (gpu-backend/src/server/config.ts), which passes them on.

Example:
    options = parse_options(["--socket", "/tmp/x.sock", "--profile-steps", "200:50"])
    options.profile  # ProfileWindow(first=200, count=50, out=PosixPath('lorafleet-steps'))
"""

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from ..grammar.limits import DEFAULT_COMPILE_TIMEOUT_S, DEFAULT_MASK_THREADS, GrammarOptions

DEFAULT_STAGE_THREADS = 4
DEFAULT_PROFILE_OUT = "lorafleet-steps"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING")


@dataclass(frozen=True)
class ProfileWindow:
    """Served steps first .. first + count - 1 (counted as the step thread launches
    them), profiled and written under the path prefix `out` (step_profiler.py)."""

    first: int
    count: int
    out: Path

    def __post_init__(self) -> None:
        if self.first < 0 or self.count < 1:
            raise ValueError(
                f"--profile-steps: the window must be first >= 0, count >= 1; "
                f"got {self.first}:{self.count}"
            )


@dataclass(frozen=True)
class ExecutorOptions:
    socket: str  # the engine's Unix socket path
    log_level: str = "INFO"
    tensor_parallel_size: int = 1  # ranks (GPUs) of one group; this process is rank 0
    stage_threads: int = DEFAULT_STAGE_THREADS  # adapters staged at once (1 under TP)
    profile: ProfileWindow | None = None  # None: the step profiler is off
    grammar: GrammarOptions = field(default_factory=GrammarOptions)

    def __post_init__(self) -> None:
        for flag, value in (
            ("--tensor-parallel-size", self.tensor_parallel_size),
            ("--stage-threads", self.stage_threads),
        ):
            if value < 1:
                raise ValueError(f"{flag}: must be >= 1, got {value}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"--log-level: must be one of {', '.join(LOG_LEVELS)}")


def parse_options(argv: list[str] | None = None) -> ExecutorOptions:
    """The options of `argv` (default sys.argv[1:]); a bad one exits 2 naming its flag."""
    parser = argparse.ArgumentParser(prog="python -m lorafleet_executor")
    parser.add_argument("--socket", required=True, help="the engine's Unix socket path")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    parser.add_argument(
        "--tensor-parallel-size",
        type=int,
        default=1,
        help="ranks (GPUs) of one tensor-parallel group; this process is rank 0",
    )
    parser.add_argument(
        "--stage-threads",
        type=int,
        default=DEFAULT_STAGE_THREADS,
        help="adapters staged at once, each by a worker process on a GPU "
        "(1 under tensor parallelism)",
    )
    parser.add_argument(
        "--profile-steps",
        type=_window,
        metavar="FIRST:COUNT",
        help="profile served steps FIRST..FIRST+COUNT-1 with the torch profiler",
    )
    parser.add_argument(
        "--profile-out",
        metavar="PREFIX",
        help=f"where the profile goes: PREFIX.json.gz and PREFIX.txt "
        f"(default {DEFAULT_PROFILE_OUT}; needs --profile-steps)",
    )
    parser.add_argument(
        "--grammar-threads",
        type=int,
        default=DEFAULT_MASK_THREADS,
        help="threads that fill a step's grammar masks (structured outputs)",
    )
    parser.add_argument(
        "--grammar-compile-timeout-s",
        type=float,
        default=DEFAULT_COMPILE_TIMEOUT_S,
        help="a grammar whose compile takes longer is refused (grammar_too_complex)",
    )
    args = parser.parse_args(argv)
    if args.profile_out is not None and args.profile_steps is None:
        parser.error("--profile-out: needs --profile-steps")
    try:
        profile = None
        if args.profile_steps is not None:
            first, count = args.profile_steps
            profile = ProfileWindow(first, count, Path(args.profile_out or DEFAULT_PROFILE_OUT))
        return ExecutorOptions(
            socket=args.socket,
            log_level=args.log_level,
            tensor_parallel_size=args.tensor_parallel_size,
            stage_threads=args.stage_threads,
            profile=profile,
            grammar=GrammarOptions(args.grammar_threads, args.grammar_compile_timeout_s),
        )
    except ValueError as error:
        parser.error(str(error))


def _window(text: str) -> tuple[int, int]:
    first, colon, count = text.partition(":")
    try:
        if not colon:
            raise ValueError
        return int(first), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be FIRST:COUNT, got {text!r}") from None
