"""FP8 base weights on CPU (the reference GEMM: x quantized and dequantized per token,
times the dequantized weight) against transformers computing the same math: a bf16
checkpoint quantized at load (`quantization fp8`), and FP8 checkpoints in the formats
FP8 releases use (transformers' fine-grained FP8 with 128x128 blocks or one scale per
tensor, compressed-tensors per channel / per block / per tensor), each generated here
from a tiny random model. Greedy tokens must be the reference's argmax at every step and
logprobs within fp32 tolerance; with adapters, LoRA runs on the unquantized activations
(PEFT around the fake-FP8 projections). Also: tensor parallelism splits FP8 weights and
their scales, what cannot be served is refused by name, and the weights take half the
bytes."""

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from fixture_skip import require_fixture
from fp8_checkpoints import FORMATS, fake_fp8, write_fp8_checkpoint
from test_model_vs_hf import MIXED_ADAPTERS, hf_logprobs, hf_model

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.kernels.fp8_quant import quantize_rows_reference
from lorafleet_executor.model.config import ModelConfig, ModelInvalid
from lorafleet_executor.model.linear import Fp8Weight
from lorafleet_executor.model.projection_reader import Fp8Plan
from lorafleet_executor.model.weights import ModelWeights
from lorafleet_executor.parallel.launch import run_group
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

transformers = pytest.importorskip("transformers")

ROOT = fixtures_root(os.environ)
# head_dim 64: q 256 rows, k and v 128, gate and up 384: whole 128-row blocks to stack
SHAPE = dict(vocab_size=300, hidden_size=256, intermediate_size=384, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)  # fmt: skip


def save_dense(path, **fields):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**{**SHAPE, **fields})
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
            elif "proj" in name or "embed" in name:
                p.normal_(
                    0, p.shape[1] ** -0.5 if "proj" in name else 1.0
                )  # unit-scale activations
        model.lm_head.weight.normal_(0, 3 * SHAPE["hidden_size"] ** -0.5)  # logits std ~3
    model.save_pretrained(path)
    return path


def per_channel_dequantized(path) -> dict[str, torch.Tensor]:
    from fp8_checkpoints import PROJECTION
    from safetensors.torch import load_file

    out = {}
    for name, w in load_file(path / "model.safetensors").items():
        if PROJECTION.fullmatch(name):
            q, scale = quantize_rows_reference(w)
            out[name] = q.float() * scale[:, None]
    return out


def executor(path, tp=None, **fields) -> Executor:
    config = InitConfig(model_path=str(path), num_pages=1500, max_num_batched_tokens=64)
    return Executor(replace(config, **fields), tp)


def assert_fp8_close(reference, requests, outputs, adapter_names=None):
    """Our greedy tokens are the reference's argmax at every step. Logprobs: an activation
    that differs from the reference's in its last float32 bit (summation order) can round
    to the neighbouring e4m3 value, 2^-4 away, and that token's K/V carry the difference
    on: such a sequence drifts by up to ~0.1 where fp32 alone stays within 1e-5. So most
    positions must agree to 1e-4 and none by more than 0.1; a wrong scale, a wrong
    activation quantization or LoRA on quantized inputs moves them all."""
    diffs = []
    for request, out in zip(requests, outputs, strict=True):
        name = (adapter_names or {}).get(request.adapter_id)
        ref = hf_logprobs(reference, request.prompt, out.tokens, name)
        assert out.tokens == ref.argmax(-1).tolist(), f"adapter {name}"
        chosen = ref.gather(1, torch.tensor(out.tokens)[:, None])[:, 0].numpy()
        diffs += np.abs(np.array(out.logprobs) - chosen).tolist()
    diffs = np.array(diffs)
    assert diffs.max() < 0.1
    assert np.mean(diffs < 1e-4) >= 0.8, f"{np.mean(diffs < 1e-4):.2f} of positions within 1e-4"


def assert_generates_as(reference, ex: Executor, lengths=(40, 7), new_tokens=12):
    rng = np.random.default_rng(1)
    requests = [
        Request(rng.integers(0, 300, size=n).tolist(), max_new_tokens=new_tokens, logprobs=3)
        for n in lengths
    ]
    assert_fp8_close(reference, requests, Driver(ex, chunk_size=16).generate(requests))


def test_a_dense_checkpoint_quantized_at_load_computes_fake_fp8_hf(tmp_path):
    dense = save_dense(tmp_path, attention_bias=True, mlp_bias=True)
    ex = executor(dense, quantization="fp8")
    assert ex.ready_info()["quantization"] == "fp8"
    layer = ex.model.weights.layers[0]
    for w in (layer.qkv, layer.o, layer.gate_up, layer.down):
        assert isinstance(w, Fp8Weight) and w.block is None and w.gemm == "torch"
        assert w.weight.dtype == torch.float8_e4m3fn and w.scale.dtype == torch.float32
    # biases, norms, embedding and lm_head stay in the model's dtype
    assert layer.o_bias.dtype == ex.model.weights.lm_head.dtype == torch.float32
    expected = per_channel_dequantized(dense)
    torch.testing.assert_close(
        layer.qkv.dequantized(),
        torch.cat([expected[f"model.layers.0.self_attn.{m}_proj.weight"] for m in "qkv"]),
    )
    reference = fake_fp8(transformers.AutoModelForCausalLM.from_pretrained(dense), expected)
    assert_generates_as(reference.eval(), ex)


def test_quantizing_at_load_logs_each_layer(tmp_path, caplog):
    dense = save_dense(tmp_path)
    with caplog.at_level("INFO", logger="lorafleet_executor.model.weights"):
        executor(dense, quantization="fp8")
    assert caplog.messages == ["quantizing to fp8: layer 1/2", "quantizing to fp8: layer 2/2"]
    caplog.clear()
    executor(dense)  # dense: nothing to show
    assert caplog.messages == []


def test_the_dense_model_is_not_what_fp8_computes(tmp_path):
    """The fake-FP8 reference differs from the dense model: the tests above can fail."""
    dense = save_dense(tmp_path)
    fp8, plain = executor(dense, quantization="fp8"), executor(dense)
    step = Driver(fp8, chunk_size=64).generate(
        [Request(list(range(3, 40)), max_new_tokens=1, logprobs=0)]
    )
    same = Driver(plain, chunk_size=64).generate(
        [Request(list(range(3, 40)), max_new_tokens=1, logprobs=0)]
    )
    assert abs(step[0].logprobs[0] - same[0].logprobs[0]) > 1e-3


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_an_fp8_checkpoint_computes_fake_fp8_hf(tmp_path, fmt):
    dense = save_dense(tmp_path / "dense")
    dequantized = write_fp8_checkpoint(dense, tmp_path / fmt, fmt)
    ex = executor(tmp_path / fmt)  # quantization "auto": the checkpoint is FP8
    assert ex.ready_info()["quantization"] == "fp8"
    qkv = ex.model.weights.layers[1].qkv
    assert qkv.block == ((128, 128) if FORMATS[fmt][2] == "block" else None)
    torch.testing.assert_close(
        qkv.dequantized(),
        torch.cat([dequantized[f"model.layers.1.self_attn.{m}_proj.weight"] for m in "qkv"]),
    )
    reference = fake_fp8(transformers.AutoModelForCausalLM.from_pretrained(dense), dequantized)
    assert_generates_as(reference.eval(), ex)


def mixed_adapter_run(ex: Executor, max_new_tokens: int):
    """A batch of base rows and the tiny adapters of ranks 4..64 (one rsLoRA) over the tiny
    fixture as an FP8 base quantized at load: (requests, outputs, the fake-FP8 PEFT
    reference, adapter names by id)."""
    tiny = ROOT / "tiny-llama"
    dirs = {name: str(ROOT / "adapters" / name) for name in MIXED_ADAPTERS}
    driver = Driver(ex, chunk_size=16)
    for i, name in enumerate(MIXED_ADAPTERS):
        driver.add_adapter(10 + i, dirs[name])
    rng = np.random.default_rng(7)
    adapter_ids = [10 + i for i in range(len(MIXED_ADAPTERS))] + [-1, -1, 10, 13]
    requests = [
        Request(rng.integers(3, ex.cfg.vocab_size, size=int(rng.integers(3, 40))).tolist(),
                adapter_id=a, max_new_tokens=max_new_tokens, logprobs=5)
        for a in adapter_ids
    ]  # fmt: skip
    outputs = driver.generate(requests)
    reference = fake_fp8(hf_model(tiny, dirs), per_channel_dequantized(tiny))
    return requests, outputs, reference, {10 + i: n for i, n in enumerate(MIXED_ADAPTERS)}


def require_tiny_fixtures() -> None:
    require_fixture(ROOT / "tiny-llama")
    for name in MIXED_ADAPTERS:
        require_fixture(ROOT / "adapters" / name)


def test_mixed_adapters_run_on_the_unquantized_activations_of_an_fp8_base():
    """As PEFT around fake-FP8 projections: the LoRA delta added to the FP8 GEMM's output,
    LoRA computed from the same unquantized x."""
    require_tiny_fixtures()
    ex = executor(
        ROOT / "tiny-llama", quantization="fp8", num_pages=6000, max_num_batched_tokens=96
    )
    requests, outputs, reference, names = mixed_adapter_run(ex, max_new_tokens=16)
    assert_fp8_close(reference, requests, outputs, names)


def _generate_fp8(tp, path: str) -> dict:
    ex = executor(path, tp, device="cpu", max_num_seqs=8)
    request = Request(list(range(3, 30)), max_new_tokens=8, logprobs=0)
    out = Driver(ex, chunk_size=8).generate([request])[0]
    layer = ex.model.weights.layers[0]
    return {
        "tokens": out.tokens,
        "logprobs": out.logprobs,
        "gate_up": layer.gate_up.dequantized(),
        "o": layer.o.dequantized(),
        "scale_shape": tuple(layer.gate_up.scale.shape),
    }


@pytest.mark.parametrize("fmt", ["ct-channel", "hf-block"])
def test_two_ranks_split_fp8_weights_and_scales(tmp_path, fmt):
    """Column-parallel shares keep their rows' (or row blocks') scales, row-parallel ones
    their columns (column blocks): every rank's share is exactly its slice of the one-
    process weight. Each rank quantizes only its share of o's and down's inputs, so the
    logprobs agree with one process within FP8's noise, not exactly."""
    # k and v 256 rows and the MLP 512 wide: each rank's share is whole 128-row blocks
    dense = save_dense(tmp_path / "dense", num_key_value_heads=4, intermediate_size=512)
    write_fp8_checkpoint(dense, tmp_path / fmt, fmt)
    single = _generate_fp8(None, str(tmp_path / fmt))
    ranks = run_group(_generate_fp8, 2, str(tmp_path / fmt))
    gate, up = single["gate_up"].split(512)
    for r, rank in enumerate(ranks):
        rows, cols = slice(256 * r, 256 * (r + 1)), slice(128 * r, 128 * (r + 1))
        assert torch.equal(rank["gate_up"], torch.cat([gate[rows], up[rows]]))
        assert torch.equal(rank["o"], single["o"][:, cols])
        assert rank["scale_shape"] == ((512,) if fmt == "ct-channel" else (4, 2))
        assert rank["tokens"] == single["tokens"]
    # only rank 0 samples; its logprobs are what the engine sees
    np.testing.assert_allclose(ranks[0]["logprobs"], single["logprobs"], atol=0.15)


def _load(tp, path: str) -> None:
    executor(path, tp, device="cpu")


def test_block_scales_that_cannot_be_stacked_or_split_are_refused_by_name(tmp_path):
    dense = save_dense(tmp_path / "dense1", num_key_value_heads=1)  # k: 64 rows, half a block
    write_fp8_checkpoint(dense, tmp_path / "fp8-1", "hf-block")
    with pytest.raises(ModelInvalid, match="64 output rows are not a multiple of the weight block"):
        executor(tmp_path / "fp8-1")
    # 2 ranks: 64 of k's 128 rows each, half a block
    dense = save_dense(tmp_path / "dense")
    write_fp8_checkpoint(dense, tmp_path / "fp8", "hf-block")
    with pytest.raises(RuntimeError, match=r"k_proj rows \[\d+, \d+\) do not fall on its 128-wide"):
        run_group(_load, 2, str(tmp_path / "fp8"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"activation_scheme": "static"},
            "quantization_config.activation_scheme static is not supported",
        ),
        ({"fmt": "e5m2"}, "quantization_config.fmt e5m2 is not supported"),
        ({"weight_block_size": [128]}, r"weight_block_size must be \[rows, columns\]"),
        ({"weight_block_size": [128, 96]}, "block columns must be 32, 64 or a multiple of 128"),
        ({"quant_method": "gptq"}, "quant_method gptq is not supported"),
    ],
    ids=["static", "e5m2", "block-1d", "block-96", "gptq"],
)
def test_fp8_configs_not_served_are_refused_by_name(tmp_path, change, message):
    import json

    dense = save_dense(tmp_path / "dense")
    write_fp8_checkpoint(dense, tmp_path / "fp8", "hf-block")
    config = json.loads((tmp_path / "fp8" / "config.json").read_text())
    config["quantization_config"] |= change
    (tmp_path / "fp8" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelInvalid, match=message):
        executor(tmp_path / "fp8")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda group: group["input_activations"].update(dynamic=False),
            "input_activations: static scales are not supported",
        ),
        (
            lambda group: group.update(input_activations=None),
            r"input_activations: none \(weight-only FP8\) are not supported",
        ),
        (
            lambda group: group["weights"].update(type="int", num_bits=4),
            "weights: int 4-bit is not supported",
        ),
    ],
    ids=["static", "weight-only", "int4"],
)
def test_compressed_tensors_configs_not_served_are_refused_by_name(tmp_path, edit, message):
    import json

    dense = save_dense(tmp_path / "dense")
    write_fp8_checkpoint(dense, tmp_path / "fp8", "ct-channel")
    config = json.loads((tmp_path / "fp8" / "config.json").read_text())
    edit(config["quantization_config"]["config_groups"]["group_0"])
    (tmp_path / "fp8" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelInvalid, match=message):
        executor(tmp_path / "fp8")


def test_float8_tensors_without_a_quantization_config_are_refused(tmp_path):
    import json

    dense = save_dense(tmp_path / "dense")
    write_fp8_checkpoint(dense, tmp_path / "fp8", "ct-channel")
    config = json.loads((tmp_path / "fp8" / "config.json").read_text())
    del config["quantization_config"]
    (tmp_path / "fp8" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelInvalid, match="q_proj.weight is float8 but config.json has no"):
        executor(tmp_path / "fp8")


def test_fp8_weights_take_a_byte_each_plus_a_scale_per_channel(tmp_path):
    dense = save_dense(tmp_path)
    plain = executor(dense)
    fp8 = executor(dense, quantization="fp8").model.weights.nbytes()
    # fp32 on CPU: 4 bytes a weight against 1, and 4 bytes of scale per output channel
    shapes = plain.cfg.module_shapes().values()
    saved_per_layer = sum(3 * i * o - 4 * o for i, o in shapes)
    assert plain.model.weights.nbytes() - fp8 == plain.cfg.num_layers * saved_per_layer


def test_the_gemm_is_chosen_for_each_stacked_weight(tmp_path):
    """torch._scaled_mm takes per-channel scales and widths that are multiples of 16; the
    Triton GEMM takes the rest; the CPU runs the reference."""
    # head_dim 12: q 96 rows, k and v 12 each: q alone suits scaled_mm, q/k/v (120) do not
    dense = save_dense(tmp_path, hidden_size=96, num_attention_heads=8, num_key_value_heads=1)
    cfg = ModelConfig.from_dir(dense)
    plan = Fp8Plan(quantize_dense=True, gemm="scaled_mm")
    layer = ModelWeights.load(cfg, dense, torch.float32, torch.device("cpu"), fp8=plan).layers[0]
    assert (layer.qkv.shape[0], layer.qkv.gemm) == (120, "triton")
    assert (layer.o.gemm, layer.gate_up.gemm, layer.down.gemm) == ("scaled_mm",) * 3
    gpu = Fp8Plan(quantize_dense=True, gemm="scaled_mm")
    assert gpu.gemm_for(torch.empty(128, 64), None) == "scaled_mm"
    assert gpu.gemm_for(torch.empty(136, 64), (128, 128)) == "triton"
    assert gpu.gemm_for(torch.empty(112, 48), None) == "scaled_mm"
    assert gpu.gemm_for(torch.empty(129, 64), None) == "triton"
    assert (
        Fp8Plan(quantize_dense=True, gemm="torch").gemm_for(torch.empty(129, 64), None) == "torch"
    )
