"""FP8 base weights on CUDA: a mixed-adapter batch with CUDA graphs on and off, through
torch._scaled_mm and through the Triton GEMM, against transformers + PEFT computing the
same math in float32 (fake-FP8 projections, tests/fp8_checkpoints.py); a block-quantized
checkpoint through the Triton GEMM; and the pool sizing seeing the smaller weights.
Skipped (visibly) without a CUDA device."""

import gc
import os

import numpy as np
import pytest
import torch
from fixture_skip import require_fixture
from fp8_checkpoints import fake_fp8, write_fp8_checkpoint
from test_fp8_models import SHAPE, mixed_adapter_run, require_tiny_fixtures, save_dense
from test_model_vs_hf import assert_near_hf

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.model.linear import Fp8Weight
from lorafleet_executor.model.pool import page_bytes
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime import init_config
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"
SMOLLM = ROOT / "smollm2-135m-instruct"


def cuda_executor(path, **overrides) -> Executor:
    config = dict(model_path=str(path), device="cuda", dtype="bfloat16", num_pages=6000,
                  max_num_seqs=16, max_num_batched_tokens=128, max_lora_rank=64)  # fmt: skip
    return Executor(InitConfig(**{**config, **overrides}))


def assert_near_reference(reference, requests, outputs, names=None):
    """bf16 activations against float32 fake FP8: bf16's noise, and FP8 rounding that it
    may flip."""
    assert_near_hf(reference, requests, outputs, names or {}, tie_margin=0.2, max_diff=0.15)


@pytest.mark.parametrize("cuda_graphs", [True, False], ids=["graphs", "eager"])
@pytest.mark.parametrize("gemm", ["scaled_mm", "triton"])
def test_fp8_base_with_mixed_adapters_matches_fake_fp8_peft(gemm, cuda_graphs, monkeypatch):
    require_tiny_fixtures()
    monkeypatch.setattr(init_config, "CUDA_FP8_GEMM", gemm)
    executor = cuda_executor(TINY, quantization="fp8", cuda_graphs=cuda_graphs)
    qkv = executor.model.weights.layers[0].qkv
    assert isinstance(qkv, Fp8Weight) and qkv.gemm == gemm and qkv.weight.is_cuda
    assert (executor.decode_graphs is not None) == cuda_graphs
    requests, outputs, reference, names = mixed_adapter_run(executor, max_new_tokens=24)
    assert_near_reference(reference, requests, outputs, names)


def test_a_block_quantized_checkpoint_runs_the_triton_gemm(tmp_path):
    transformers = pytest.importorskip("transformers")
    dense = save_dense(tmp_path / "dense")
    dequantized = write_fp8_checkpoint(dense, tmp_path / "fp8", "hf-block")
    executor = cuda_executor(tmp_path / "fp8", cuda_graphs=True)
    down = executor.model.weights.layers[0].down
    assert down.block == (128, 128) and down.gemm == "triton"
    rng = np.random.default_rng(1)
    requests = [Request(rng.integers(0, SHAPE["vocab_size"], size=n).tolist(), max_new_tokens=16,
                        logprobs=3) for n in (40, 7, 90)]  # fmt: skip
    outputs = Driver(executor, chunk_size=32).generate(requests)
    reference = fake_fp8(transformers.AutoModelForCausalLM.from_pretrained(dense), dequantized)
    assert_near_reference(reference.eval(), requests, outputs)


def test_the_pool_gets_the_pages_fp8_weights_free():
    """memory_budget.py sizes the pool from the memory left: SmolLM2's projections in FP8
    free ~1 byte a weight, which become pages."""
    require_fixture(SMOLLM)
    pages, weights = {}, {}
    for quantization in ("auto", "fp8"):
        executor = cuda_executor(SMOLLM, num_pages=0, gpu_memory_utilization=0.3,
                                 cuda_graphs=False, quantization=quantization)  # fmt: skip
        pages[quantization] = executor.pool.num_pages
        weights[quantization] = executor.model.weights.nbytes()
        cfg = executor.cfg
        del executor
        gc.collect()
        torch.cuda.empty_cache()
    page = page_bytes(cfg.num_layers, cfg.page_width, torch.bfloat16)
    expected = (weights["auto"] - weights["fp8"]) / page
    gained = pages["fp8"] - pages["auto"]
    print(f"pool pages {pages}: +{gained}, weights freed {expected:.0f} pages' worth")
    assert expected > 5000
    assert gained == pytest.approx(expected, rel=0.1)
