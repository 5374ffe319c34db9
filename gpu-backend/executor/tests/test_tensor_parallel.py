"""Tensor parallelism on CPU: two gloo ranks serve a mixed-adapter batch exactly as one
process does (greedy tokens identical, logprobs within fp32 tolerance), adapter shares
fit the same page ids on both ranks, a failing adapter fails on every rank, and a model
that cannot be split is refused by name."""

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from fixture_skip import require_fixture

from lorafleet_executor.errors import AdapterInvalid
from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.model.config import ModelConfig
from lorafleet_executor.parallel.group import TensorGroup
from lorafleet_executor.parallel.launch import run_group
from lorafleet_executor.parallel.shard import TensorParallelUnsupported, TensorShard
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"
ADAPTERS = ROOT / "adapters"
# mixed ranks (4, 8, 16, 16 with rsLoRA) and two rows on the base model
BATCH = [("tiny-r4", 1), ("tiny-r8", 2), (None, -1), ("tiny-r16", 3), ("tiny-r16-rslora", 4)]


def _config() -> InitConfig:
    return InitConfig(
        model_path=str(TINY),
        device="cpu",
        num_pages=2000,
        max_num_seqs=8,
        max_num_batched_tokens=64,
    )


def _requests() -> list[Request]:
    rng = np.random.default_rng(3)
    return [
        Request(
            prompt=rng.integers(3, 500, size=7 + 5 * i).tolist(),
            adapter_id=adapter_id,
            max_new_tokens=6,
            logprobs=3,
        )
        for i, (_, adapter_id) in enumerate(BATCH)
    ]


def _generate(tp: TensorGroup | None) -> dict:
    executor = Executor(_config(), tp)
    driver = Driver(executor, chunk_size=8)
    staged = {}
    for name, adapter_id in BATCH:
        if name is not None:
            staged[adapter_id] = executor.stage_adapter(adapter_id, str(ADAPTERS / name)).num_pages
            driver.load_adapter(adapter_id, staged[adapter_id])
    out = driver.generate(_requests())
    collectives = {
        label: _collectives_of_one_step(driver, adapter_id) for label, adapter_id in BASE_OR_LORA
    }
    refused = None
    try:
        executor.stage_adapter(99, str(ADAPTERS / "no-such-adapter"))
    except AdapterInvalid as error:
        refused = error.message
    return {
        "tokens": [g.tokens for g in out],
        "logprobs": [g.logprobs for g in out],
        "top": [g.top for g in out],
        "staged_pages": staged,
        "page_width": executor.pool.page_width,
        "refused": refused,
        "collectives": collectives,
    }


BASE_OR_LORA = (("base", -1), ("lora", 3))


def _collectives_of_one_step(driver: Driver, adapter_id: int) -> dict[str, int]:
    """c10d ops of one prefill step (and the empty step that frees it), by name."""
    request = Request(prompt=list(range(3, 10)), adapter_id=adapter_id, max_new_tokens=1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        driver.generate([request])
    return {e.key: e.count for e in prof.key_averages() if e.key.startswith("c10d::")}


@pytest.fixture(scope="module")
def outputs():
    require_fixture(TINY)
    return _generate(None), run_group(_generate, 2)


def test_two_ranks_generate_the_tokens_of_one(outputs):
    single, ranks = outputs
    for rank in ranks:
        assert rank["tokens"] == single["tokens"]
    # only rank 0 samples; its logprobs are what the engine sees
    np.testing.assert_allclose(ranks[0]["logprobs"], single["logprobs"], atol=2e-4)
    for got, want in zip(ranks[0]["top"], single["top"], strict=True):
        for g, w in zip(got, want, strict=True):
            assert g.keys() == w.keys()
            np.testing.assert_allclose(list(g.values()), list(w.values()), atol=2e-4)


def test_adapter_shares_fit_the_same_page_ids_on_every_rank(outputs):
    single, ranks = outputs
    assert ranks[0]["page_width"] == ranks[1]["page_width"] == single["page_width"] // 2
    assert ranks[0]["staged_pages"] == ranks[1]["staged_pages"]
    # rank r: the whole A of q/k/v/gate/up and Bᵀ of o/down, half of the rest, W/2 wide


def test_adapters_add_no_collective(outputs):
    single, ranks = outputs
    layers = ModelConfig.from_dir(TINY).num_layers
    assert single["collectives"] == {"base": {}, "lora": {}}
    for rank in ranks:
        base, lora = rank["collectives"]["base"], rank["collectives"]["lora"]
        # Megatron's: the embedding, o and down of every layer; the logits; the tokens
        assert base == {
            "c10d::allreduce_": 1 + 2 * layers,
            "c10d::allgather_": 1,
            "c10d::broadcast_": 1,
        }
        assert lora == base


def test_a_bad_adapter_is_refused_on_every_rank(outputs):
    single, ranks = outputs
    assert single["refused"] and "is not a directory" in single["refused"]
    assert ranks[0]["refused"] == ranks[1]["refused"] == single["refused"]


def test_a_model_that_cannot_be_split_is_refused_by_name():
    cfg = ModelConfig.from_dir(TINY)  # 2 KV heads, intermediate 160
    with pytest.raises(TensorParallelUnsupported, match="num_key_value_heads 2 is not divisible"):
        TensorShard(0, 4).local_config(cfg)
    with pytest.raises(TensorParallelUnsupported, match="tensor_parallel_size must be >= 1"):
        TensorShard(0, 0)
    with pytest.raises(TensorParallelUnsupported, match="rank 2 is outside 0..1"):
        TensorShard(2, 2)


def _generate_biased(tp: TensorGroup | None, model_path: str) -> list[list[float]]:
    executor = Executor(replace(_config(), model_path=model_path), tp)
    requests = [Request(prompt=list(range(3, 30)), max_new_tokens=6, logprobs=0)]
    out = Driver(executor, chunk_size=8).generate(requests)
    return [out[0].tokens, out[0].logprobs]


def test_row_parallel_biases_are_added_once(tmp_path):
    """Llama's attention_bias and mlp_bias under TP: q/k/v and gate/up biases split with
    their rows, o's and down's whole and added after the all-reduce (not once per rank)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, attention_bias=True, mlp_bias=True,
    )  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    model.save_pretrained(tmp_path)
    single = _generate_biased(None, str(tmp_path))
    ranks = run_group(_generate_biased, 2, str(tmp_path))
    with torch.no_grad():
        ids = torch.tensor([list(range(3, 30)) + single[0][:-1]])
        ref = torch.log_softmax(model(input_ids=ids).logits[0], -1)[26:]
    assert single[0] == ref.argmax(-1).tolist()
    for tokens, _ in ranks:
        assert tokens == single[0]
    np.testing.assert_allclose(ranks[0][1], single[1], atol=2e-4)
