"""StageProcesses: a worker process parses exactly what parse_adapter does in-process,
straight into the host buffer it is lent (no copy after), its errors come back by name,
and a dead worker costs one stage, not the executor."""

import os
import shutil
import signal

import pytest
import torch
from fixture_skip import require_fixture

from lorafleet_executor.errors import AdapterInvalid, ExecutorError
from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.model.adapters import packed_bytes, parse_adapter, read_adapter_config
from lorafleet_executor.model.config import ModelConfig
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime import stage_processes
from lorafleet_executor.runtime.executor import Executor
from lorafleet_executor.runtime.host_buffers import HostBuffers
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


def stage(stagers, buffers, adapter_id, name, dtype=torch.float32):
    """What the executor does: a buffer of the adapter's size, parsed into by a worker."""
    cfg = ModelConfig.from_dir(TINY)
    config = read_adapter_config(ADAPTERS / name, cfg, 64)
    buffer = buffers.take(packed_bytes(config, cfg, dtype))
    return buffer, stagers.parse(
        adapter_id, ADAPTERS / name, cfg, 64, dtype, config, buffer, buffers.live_ids()
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["tiny-r64", "tiny-mix-06"])
def test_a_worker_packs_what_parse_adapter_packs_into_the_lent_buffer(stagers, name, dtype):
    cfg = ModelConfig.from_dir(TINY)
    here = parse_adapter(3, ADAPTERS / name, cfg, 64, dtype)
    buffers = HostBuffers(1 << 30, shared=True, pin=False)
    buffer, there = stage(stagers, buffers, 3, name, dtype)
    assert (there.adapter_id, there.rank, there.scale, there.targets) == (
        here.adapter_id,
        here.rank,
        here.scale,
        here.targets,
    )
    assert there.spans == here.spans and there.num_pages == here.num_pages
    assert there.rows.dtype == dtype and torch.equal(there.rows, here.rows)
    # Packed where the host tier keeps it: the rows are the lent buffer, byte for byte.
    assert there.rows.untyped_storage().data_ptr() == buffer.data.data_ptr()
    assert there.host_bytes == buffer.data.numel()


def test_buffers_are_reused_by_size_and_workers_unmap_the_released():
    require_fixture(TINY)
    stagers = StageProcesses(workers=1)
    cfg = ModelConfig.from_dir(TINY)

    def size(name: str) -> int:
        return packed_bytes(read_adapter_config(ADAPTERS / name, cfg, 64), cfg, torch.float32)

    one, big_bytes = size("tiny-r8"), size("tiny-r64")
    # Room for the r64 one, not beside an r8 one kept free.
    buffers = HostBuffers(big_bytes + one // 2, shared=True, pin=False)
    try:
        first, adapter = stage(stagers, buffers, 1, "tiny-r8")
        buffers.give_back(adapter.rows)  # the adapter left the host tier
        again, adapter = stage(stagers, buffers, 2, "tiny-r8")
        assert again is first and adapter.rows.untyped_storage().data_ptr() == first.data.data_ptr()
        # A bigger one does not fit beside the kept r8 buffer: that one is released, and
        # the worker, told with this stage which buffers are still held, unmaps it.
        assert stagers._pool.submit(_mapped_ids).result() == [first.id]
        buffers.give_back(adapter.rows)
        big, adapter = stage(stagers, buffers, 3, "tiny-r64")
        assert big.id != first.id and buffers.live_ids() == [big.id]
        assert stagers._pool.submit(_mapped_ids).result() == [big.id]
        here = parse_adapter(3, ADAPTERS / "tiny-r64", cfg, 64, torch.float32)
        assert torch.equal(adapter.rows, here.rows)
    finally:
        stagers.shutdown()


def _mapped_ids() -> list[int]:  # runs in the worker
    return sorted(stage_processes._mapped)


def test_a_bad_adapter_comes_back_as_adapter_invalid_and_the_workers_go_on(stagers, tmp_path):
    cfg = ModelConfig.from_dir(TINY)
    shutil.copytree(ADAPTERS / "tiny-r8", tmp_path / "a")
    (tmp_path / "a" / "adapter_model.safetensors").unlink()
    buffers = HostBuffers(1 << 30, shared=True, pin=False)
    config = read_adapter_config(tmp_path / "a", cfg, 64)
    buffer = buffers.take(packed_bytes(config, cfg, torch.float32))
    with pytest.raises(AdapterInvalid, match="adapter_model.safetensors is missing"):
        stagers.parse(1, tmp_path / "a", cfg, 64, torch.float32, config, buffer, buffers.live_ids())
    assert stage(stagers, buffers, 2, "tiny-r8")[1].rank == 8


def test_a_dead_worker_fails_one_stage_and_the_next_gets_fresh_workers():
    require_fixture(TINY)
    stagers = StageProcesses(workers=1)
    buffers = HostBuffers(1 << 30, shared=True, pin=False)
    try:
        assert stage(stagers, buffers, 1, "tiny-r4")[1].rank == 4
        # The pool's own table of its processes: there is no public way to reach them.
        for process in list(stagers._pool._processes.values()):
            os.kill(process.pid, signal.SIGKILL)
        with pytest.raises(ExecutorError, match="a worker died"):
            stage(stagers, buffers, 2, "tiny-r4")
        assert stage(stagers, buffers, 3, "tiny-r4")[1].rank == 4
    finally:
        stagers.shutdown()


def test_an_executor_with_stage_processes_stages_like_one_without(stagers, tmp_path):
    config = InitConfig(model_path=str(TINY), num_pages=2000, max_lora_rank=64)
    with_workers, without = Executor(config, stagers=stagers), Executor(config)
    for executor in (with_workers, without):
        executor.stage_adapter(5, str(ADAPTERS / "tiny-mix-11"))
    assert torch.equal(with_workers.host.get(5).rows, without.host.get(5).rows)
    for executor in (with_workers, without):
        with pytest.raises(AdapterInvalid, match="is not a directory"):
            executor.stage_adapter(6, str(ADAPTERS / "no-such-adapter"))
        broken = tmp_path / f"broken-{id(executor)}"
        shutil.copytree(ADAPTERS / "tiny-r8", broken)
        (broken / "adapter_model.safetensors").write_bytes(b"garbage")
        with pytest.raises(AdapterInvalid, match="shorter than its 8-byte header length"):
            executor.stage_adapter(7, str(broken))
        assert 6 not in executor.host and 7 not in executor.host
        # The buffer stage 7 took is free again: the next adapter of its size gets it.
        kept = sorted(executor.buffers.live_ids())
        executor.stage_adapter(8, str(ADAPTERS / "tiny-r8"))
        assert sorted(executor.buffers.live_ids()) == kept


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_rows_land_in_pinned_memory(stagers):
    cfg = ModelConfig.from_dir(TINY)
    buffers = HostBuffers(1 << 30, shared=True, pin=True)
    buffer, adapter = stage(stagers, buffers, 1, "tiny-r16", torch.bfloat16)
    expected = parse_adapter(1, ADAPTERS / "tiny-r16", cfg, 64, torch.bfloat16)
    assert adapter.rows.is_pinned() and torch.equal(adapter.rows, expected.rows)
    assert adapter.rows.untyped_storage().data_ptr() == buffer.data.data_ptr()
