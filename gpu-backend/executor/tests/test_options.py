"""The executor's options: its flags alone, checked at start, each bad one refused by
name; the environment is not read."""

from pathlib import Path

import pytest

from lorafleet_executor.grammar.limits import GrammarOptions
from lorafleet_executor.runtime.options import (
    DEFAULT_STAGE_THREADS,
    ExecutorOptions,
    ProfileWindow,
    parse_options,
)


def test_defaults_need_only_the_socket():
    assert parse_options(["--socket", "/s"]) == ExecutorOptions(
        socket="/s", log_level="INFO", tensor_parallel_size=1, stage_threads=4, profile=None
    )
    assert DEFAULT_STAGE_THREADS == 4


def test_every_flag_lands_in_its_field():
    options = parse_options(
        ["--socket", "/s", "--log-level", "DEBUG", "--tensor-parallel-size", "2"]
        + ["--stage-threads", "8", "--profile-steps", "200:50", "--profile-out", "/tmp/p"]
        + ["--grammar-threads", "6", "--grammar-compile-timeout-s", "2.5"]
    )
    assert options == ExecutorOptions(
        socket="/s",
        log_level="DEBUG",
        tensor_parallel_size=2,
        stage_threads=8,
        profile=ProfileWindow(first=200, count=50, out=Path("/tmp/p")),
        grammar=GrammarOptions(mask_threads=6, compile_timeout_s=2.5),
    )


def test_the_profile_goes_to_lorafleet_steps_unless_told():
    options = parse_options(["--socket", "/s", "--profile-steps", "0:1"])
    assert options.profile == ProfileWindow(0, 1, Path("lorafleet-steps"))


def test_the_environment_is_not_read(monkeypatch):
    for name, value in {
        "LORAFLEET_TENSOR_PARALLEL_SIZE": "4",
        "LORAFLEET_STAGE_THREADS": "9",
        "LORAFLEET_PROFILE_STEPS": "5:3",
        "LORAFLEET_PROFILE_OUT": "/tmp/x",
    }.items():
        monkeypatch.setenv(name, value)
    assert parse_options(["--socket", "/s"]) == ExecutorOptions(socket="/s")


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--tensor-parallel-size", "0"], "--tensor-parallel-size: must be >= 1, got 0"),
        (["--stage-threads", "-1"], "--stage-threads: must be >= 1, got -1"),
        (["--grammar-threads", "0"], "--grammar-threads: must be >= 1, got 0"),
        (["--grammar-compile-timeout-s", "0"], "--grammar-compile-timeout-s: must be > 0, got 0.0"),
        (["--profile-steps", "5"], "argument --profile-steps: must be FIRST:COUNT, got '5'"),
        (["--profile-steps", "a:b"], "argument --profile-steps: must be FIRST:COUNT, got 'a:b'"),
        (
            ["--profile-steps", "3:0"],
            "--profile-steps: the window must be first >= 0, count >= 1; got 3:0",
        ),
        (["--profile-out", "/tmp/p"], "--profile-out: needs --profile-steps"),
        (["--log-level", "TRACE"], "argument --log-level: invalid choice: 'TRACE'"),
    ],
)
def test_a_bad_flag_exits_2_naming_it(capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        parse_options(["--socket", "/s", *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_records_built_in_code_are_checked_too():
    with pytest.raises(ValueError, match="--stage-threads: must be >= 1, got 0"):
        ExecutorOptions(socket="/s", stage_threads=0)
    with pytest.raises(ValueError, match="first >= 0, count >= 1; got -1:2"):
        ProfileWindow(-1, 2, Path("p"))
