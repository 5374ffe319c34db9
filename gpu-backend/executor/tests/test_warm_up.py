"""The start-up warm-up runs the eager kernels (Triton in the interpreter on CPU, compiled
on CUDA) through a LoRA prefill and writes nothing but the scratch page."""

import torch
from fixture_skip import require_fixture
from test_executor import TINY

from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_executor.runtime.warm_up import warm_up_eager


def test_warm_up_writes_only_the_scratch_page():
    require_fixture(TINY)
    ex = Executor(InitConfig(model_path=str(TINY), num_pages=64, max_lora_rank=16))
    ex.pool.data.fill_(0.5)
    ex.model.lora_backend = ex.model.kernel_backend = "triton"  # the interpreter on CPU
    warm_up_eager(ex.model, ex.pool, max_rank=16)
    scratch = ex.pool.scratch_page
    others = torch.cat([ex.pool.data[:, :scratch], ex.pool.data[:, scratch + 1 :]], dim=1)
    assert torch.all(others == 0.5)
    assert torch.isfinite(ex.pool.data[:, scratch]).all()
