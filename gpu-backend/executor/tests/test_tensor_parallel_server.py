"""The protocol server as rank 0 of a 2-rank tensor-parallel group (gloo, CPU), started
as the engine's client starts it (`--tensor-parallel-size 2` on its command line):
the engine talks to one executor, rank 0 broadcasts what it acts on, and the answers
equal those of one process."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_server import EngineEnd
from test_server_model import one_seq_plan

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.protocol.messages import InitConfig, LoadAdapter, StageAdapter
from lorafleet_executor.runtime.executor import Executor
from lorafleet_executor.runtime.server import EXIT_OK

FIXTURES = fixtures_root(os.environ)
TINY = FIXTURES / "tiny-llama"
ADAPTER = FIXTURES / "adapters" / "tiny-r16"

pytestmark = pytest.mark.skipif(
    not (TINY / "config.json").exists() or not ADAPTER.exists(),
    reason=f"tiny fixture model missing under {FIXTURES} (npm run setup makes it)",
)

CONFIG = InitConfig(
    model_path=str(TINY),
    dtype="float32",
    device="cpu",
    num_pages=600,
    max_lora_rank=16,
    max_num_seqs=4,
    max_num_batched_tokens=64,
    host_cache_bytes=64 << 20,
    lora_backend="torch",
    cuda_graphs=False,
)
TP2 = ("--tensor-parallel-size", "2")


def test_rank0_serves_the_engine_as_one_executor(tmp_path):
    engine = EngineEnd(tmp_path, timeout=120, flags=TP2)
    single = Executor(CONFIG)
    try:
        engine.send(1, "init", CONFIG)
        ready = engine.receive()
        assert (ready.request_id, ready.name) == (1, "ready"), ready
        assert ready.body["page_width"] == single.ready_info()["page_width"] // 2
        assert ready.body["num_kv_heads"] == 2  # the model's, not a rank's

        engine.send(2, "stage_adapter", StageAdapter(3, str(ADAPTER)))
        staged = engine.receive()
        assert staged.name == "adapter_staged", staged
        pages = np.arange(staged.body.num_pages, dtype=np.int32)[::-1].copy()
        engine.send(3, "load_adapter", LoadAdapter(3, pages))
        assert engine.receive().name == "ok"
        # A rank holds A of q/k/v/gate/up and Bᵀ of o/down whole: more pages, W/2 wide.
        single_pages = single.stage_adapter(3, str(ADAPTER)).num_pages
        assert single_pages < staged.body.num_pages
        single.load_adapter(3, pages[-single_pages:])

        kv = np.arange(len(pages), len(pages) + 8, dtype=np.int32)
        for step_id, adapter_id in ((4, 3), (5, -1)):
            plan = one_seq_plan(step_id, adapter_id, kv + 8 * step_id)
            engine.send(step_id, "step", plan)
            got = engine.receive()
            assert (got.request_id, got.name) == (step_id, "step_result"), got
            want = single.step(plan)
            assert got.body.tokens.tolist() == want.tokens.tolist()
            np.testing.assert_allclose(got.body.top_logprobs, want.top_logprobs, atol=2e-4)

        engine.send(6, "stage_adapter", StageAdapter(4, str(tmp_path / "nowhere")))
        refused = engine.receive()
        assert refused.name == "error" and refused.body.code == "adapter_invalid", refused

        workers = _children(engine.process.pid)
        assert len(workers) == 1  # rank 1
        engine.send(7, "shutdown")
        assert engine.receive().name == "ok"
        assert engine.exit_code() == EXIT_OK
        _wait_gone(workers)
    finally:
        if engine.process.poll() is None:
            engine.process.kill()


def test_the_ranks_end_when_the_engine_closes_the_socket(tmp_path):
    engine = EngineEnd(tmp_path, timeout=120, flags=TP2)
    try:
        engine.send(1, "init", CONFIG)
        assert engine.receive().name == "ready"
        workers = _children(engine.process.pid)
        engine.stream.close()
        engine.conn.close()
        assert engine.exit_code() == EXIT_OK
        _wait_gone(workers)
    finally:
        if engine.process.poll() is None:
            engine.process.kill()


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 20
    while any(_running(pid) for pid in pids):
        assert time.monotonic() < deadline, f"ranks {pids} outlived rank 0"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by whatever init this box has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


def test_a_bad_tensor_parallel_size_is_refused_by_name(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lorafleet_executor", "--socket", str(tmp_path / "s")]
        + ["--tensor-parallel-size", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--tensor-parallel-size: must be >= 1, got 0" in done.stderr
