"""StageProcesses: a worker process parses exactly what parse_adapter does in-process,
its errors come back by name, and a dead worker costs one stage, not the executor."""

import os
import shutil
import signal

import pytest
import torch
from fixture_skip import require_fixture

from lorafleet_executor.errors import AdapterInvalid, ExecutorError
from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.model.adapters import parse_adapter
from lorafleet_executor.model.config import ModelConfig
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_executor.runtime.stage_processes import StageProcesses

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"
ADAPTERS = ROOT / "adapters"


@pytest.fixture(scope="module")
def stagers():
    require_fixture(TINY)
    stagers = StageProcesses(workers=2)
    yield stagers
    stagers.shutdown()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["tiny-r64", "tiny-mix-06"])
def test_a_worker_packs_what_parse_adapter_packs(stagers, name, dtype):
    cfg = ModelConfig.from_dir(TINY)
    here = parse_adapter(3, ADAPTERS / name, cfg, 64, dtype)
    there = stagers.parse(3, ADAPTERS / name, cfg, 64, dtype, pin=False)
    assert (there.adapter_id, there.rank, there.scale, there.targets) == (
        here.adapter_id,
        here.rank,
        here.scale,
        here.targets,
    )
    assert there.spans == here.spans and there.num_pages == here.num_pages
    assert there.rows.dtype == dtype and torch.equal(there.rows, here.rows)


def test_workers_pack_into_a_lent_buffer_that_grows_once_and_is_copied_out():
    require_fixture(TINY)
    cfg = ModelConfig.from_dir(TINY)
    stagers = StageProcesses(workers=1)
    lent = lambda: stagers._buffers.queue[0][1]  # noqa: E731 (the one slot's buffer)
    try:
        stagers.parse(1, ADAPTERS / "tiny-r8", cfg, 64, torch.float32, pin=False)
        small = lent()
        big = stagers.parse(2, ADAPTERS / "tiny-r64", cfg, 64, torch.float32, pin=False)
        grown = lent()
        assert grown.numel() == big.host_bytes > small.numel()
        for name in ("tiny-r64", "tiny-r8", "tiny-mix-06"):  # each fits: packed in place
            there = stagers.parse(3, ADAPTERS / name, cfg, 64, torch.float32, pin=False)
            assert lent() is grown
            assert there.rows.untyped_storage().data_ptr() != grown.untyped_storage().data_ptr()
            here = parse_adapter(3, ADAPTERS / name, cfg, 64, torch.float32)
            assert torch.equal(there.rows, here.rows)
    finally:
        stagers.shutdown()


def test_a_bad_adapter_comes_back_as_adapter_invalid_and_the_workers_go_on(stagers, tmp_path):
    cfg = ModelConfig.from_dir(TINY)
    shutil.copytree(ADAPTERS / "tiny-r8", tmp_path / "a")
    (tmp_path / "a" / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterInvalid, match="adapter_model.safetensors is missing"):
        stagers.parse(1, tmp_path / "a", cfg, 64, torch.float32, pin=False)
    assert stagers.parse(2, ADAPTERS / "tiny-r8", cfg, 64, torch.float32, pin=False).rank == 8


def test_a_dead_worker_fails_one_stage_and_the_next_gets_fresh_workers():
    require_fixture(TINY)
    cfg = ModelConfig.from_dir(TINY)
    stagers = StageProcesses(workers=1)
    try:
        assert stagers.parse(1, ADAPTERS / "tiny-r4", cfg, 64, torch.float32, pin=False)
        # The pool's own table of its processes: there is no public way to reach them.
        for process in list(stagers._pool._processes.values()):
            os.kill(process.pid, signal.SIGKILL)
        with pytest.raises(ExecutorError, match="a worker died"):
            stagers.parse(2, ADAPTERS / "tiny-r4", cfg, 64, torch.float32, pin=False)
        assert stagers.parse(3, ADAPTERS / "tiny-r4", cfg, 64, torch.float32, pin=False).rank == 4
    finally:
        stagers.shutdown()


def test_an_executor_with_stage_processes_stages_like_one_without(stagers):
    config = InitConfig(model_path=str(TINY), num_pages=2000, max_lora_rank=64)
    with_workers, without = Executor(config, stagers=stagers), Executor(config)
    for executor in (with_workers, without):
        executor.stage_adapter(5, str(ADAPTERS / "tiny-mix-11"))
    assert torch.equal(with_workers.host.get(5).rows, without.host.get(5).rows)
    with pytest.raises(AdapterInvalid, match="is not a directory"):
        with_workers.stage_adapter(6, str(ADAPTERS / "no-such-adapter"))
    assert 6 not in with_workers.host


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_rows_land_in_pinned_memory(stagers):
    cfg = ModelConfig.from_dir(TINY)
    adapter = stagers.parse(1, ADAPTERS / "tiny-r16", cfg, 64, torch.bfloat16, pin=True)
    expected = parse_adapter(1, ADAPTERS / "tiny-r16", cfg, 64, torch.bfloat16)
    assert adapter.rows.is_pinned() and torch.equal(adapter.rows, expected.rows)
