"""Llama-family variants against HF transformers in fp32, one per config.json field that
changes the math: Qwen2 (q/k/v biases), Llama's attention_bias (q/k/v and o biases) and
mlp_bias, RoPE scaling (llama3, linear, yarn, dynamic within its context), head_dim other
than hidden / heads, rms_norm_eps, Mistral, tied embeddings and a checkpoint whose lm_head
unties them. Each model is a tiny random one saved with transformers into tmp_path; our
greedy tokens must be transformers' argmax at every step and our logprobs within 2e-4.
What is not served is refused at load, naming the field or tensor."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lorafleet_executor.model.config import ModelConfig, ModelInvalid
from lorafleet_executor.model.rope import inverse_frequencies, rope_tables
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

transformers = pytest.importorskip("transformers")

SHAPE = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
YARN_ROPE = {
    "rope_type": "yarn",
    "rope_theta": 10000.0,
    "factor": 4.0,
    "original_max_position_embeddings": 64,
    "beta_fast": 16,
}
FAMILIES = {
    "qwen2-bias": (transformers.Qwen2Config, {}),
    "llama-attention-bias": (transformers.LlamaConfig, {"attention_bias": True}),
    "llama-mlp-bias": (transformers.LlamaConfig, {"mlp_bias": True}),
    "yarn-rope": (transformers.LlamaConfig, {"rope_parameters": YARN_ROPE}),
    "yarn-mscale": (
        transformers.LlamaConfig,
        {"rope_parameters": {**YARN_ROPE, "mscale": 0.707, "mscale_all_dim": 1.0}},
    ),
    "dynamic-rope": (
        transformers.LlamaConfig,
        {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}},
    ),
    "head-dim": (transformers.LlamaConfig, {"head_dim": 32}),
    "rms-norm-eps": (transformers.LlamaConfig, {"rms_norm_eps": 0.01}),
    "llama3-rope": (transformers.LlamaConfig, {"rope_parameters": LLAMA3_ROPE}),
    "linear-rope": (
        transformers.LlamaConfig,
        {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}},
    ),
    "mistral": (transformers.MistralConfig, {"sliding_window": None}),
    "tied": (transformers.LlamaConfig, {"tie_word_embeddings": True}),
    "default": (transformers.LlamaConfig, {}),
    "qwen2-sliding-window-off": (
        transformers.Qwen2Config,
        {"use_sliding_window": False, "sliding_window": 16},
    ),
}


def save_tiny(path, family):
    config_class, extra = FAMILIES[family]
    torch.manual_seed(0)
    config = config_class(**SHAPE, **extra)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)  # make the biases matter
    model.save_pretrained(path)
    return model.eval()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_matches_hf(tmp_path, family):
    model = save_tiny(tmp_path, family)
    executor = Executor(
        InitConfig(model_path=str(tmp_path), num_pages=1200, max_num_batched_tokens=64)
    )
    layer = executor.model.weights.layers[0]
    assert (layer.qkv_bias is not None) == family.startswith(("qwen2", "llama-attention-bias"))
    assert (layer.o_bias is not None) == (family == "llama-attention-bias")
    assert (layer.down_bias is not None) == (family == "llama-mlp-bias")
    if family == "tied":
        assert executor.model.weights.lm_head is executor.model.weights.embed
    # prompts past original_max_position (64) so llama3's and yarn's scaling matters
    assert_generates_as_hf(executor, model, prompt_lengths=(90, 5))


def assert_generates_as_hf(executor, model, prompt_lengths, new_tokens=10):
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 300, size=n).tolist() for n in prompt_lengths]
    outs = Driver(executor, chunk_size=40).generate(
        [Request(p, max_new_tokens=new_tokens, logprobs=3) for p in prompts]
    )
    for prompt, out in zip(prompts, outs, strict=True):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + out.tokens[:-1]])).logits[0]
        ref = torch.log_softmax(logits, -1)[len(prompt) - 1 :]
        assert out.tokens == ref.argmax(-1).tolist()
        np.testing.assert_allclose(
            out.logprobs, ref.gather(1, torch.tensor(out.tokens)[:, None])[:, 0], atol=2e-4
        )


ROPES = {
    "llama3": LLAMA3_ROPE,
    "linear": FAMILIES["linear-rope"][1]["rope_parameters"],
    "yarn": YARN_ROPE,
    "yarn-mscale": FAMILIES["yarn-mscale"][1]["rope_parameters"],
    "yarn-no-truncate": {**YARN_ROPE, "truncate": False, "attention_factor": 1.5},
    "dynamic": FAMILIES["dynamic-rope"][1]["rope_parameters"],
    "default": {"rope_type": "default", "rope_theta": 10000.0},
}


@pytest.mark.parametrize("kind", list(ROPES))
def test_rope_tables_match_hf(tmp_path, kind):
    config = transformers.LlamaConfig(**SHAPE, rope_parameters=ROPES[kind])
    config.save_pretrained(tmp_path)
    ours = ModelConfig.from_dir(tmp_path)
    hf_rope = transformers.models.llama.modeling_llama.LlamaRotaryEmbedding(config)
    torch.testing.assert_close(inverse_frequencies(ours.rope, ours.head_dim), hf_rope.inv_freq)
    positions = torch.arange(ours.max_position)[None]
    hf_cos, hf_sin = hf_rope(torch.zeros(1, dtype=torch.float32), positions)
    cos, sin = rope_tables(ours.rope, ours.head_dim, ours.max_position, torch.device("cpu"))
    torch.testing.assert_close(cos, hf_cos[0])
    torch.testing.assert_close(sin, hf_sin[0])
    # dynamic NTK is transformers' unscaled RoPE within max_position_embeddings, served so far;
    # yarn's 4 x 64 is within it too
    assert ours.max_position == SHAPE["max_position_embeddings"]


@pytest.mark.parametrize(
    ("config_class", "fields", "max_position"),
    [
        (transformers.MistralConfig, {"sliding_window": 128}, 128),
        (transformers.MistralConfig, {"sliding_window": None}, 512),
        (transformers.Qwen2Config, {"use_sliding_window": True, "sliding_window": 128}, 512),
        (
            transformers.Qwen2Config,
            {"use_sliding_window": True, "sliding_window": 128, "max_window_layers": 1},
            128,
        ),
        (transformers.Qwen2Config, {"use_sliding_window": False, "sliding_window": 128}, 512),
        (transformers.LlamaConfig, {"rope_parameters": {**YARN_ROPE, "factor": 16.0}}, 1024),
    ],
    ids=["mistral", "mistral-none", "qwen2-no-sliding-layer", "qwen2", "qwen2-off", "yarn"],
)
def test_context_stops_where_served_exactly(tmp_path, config_class, fields, max_position):
    """A sliding window caps the context (within it attention is full attention); yarn
    serves factor x its pretraining context."""
    config_class(**SHAPE, **fields).save_pretrained(tmp_path)
    assert ModelConfig.from_dir(tmp_path).max_position == max_position


def test_mistral_without_a_window_key_slides_at_transformers_default(tmp_path):
    transformers.MistralConfig(**SHAPE).save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    del raw["sliding_window"]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert transformers.AutoConfig.from_pretrained(tmp_path).sliding_window == 4096
    assert ModelConfig.from_dir(tmp_path).max_position == 512  # 4096 is past 512


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hidden_act": "gelu"}, "hidden_act gelu is not supported"),
        ({"model_type": "gemma"}, "model_type gemma is not supported"),
        (
            {"rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4, "factor": 2.0,
                                 "short_factor": [1.0] * 4, "long_factor": [2.0] * 4}},
            "rope type longrope is not supported",
        ),
        (
            {"rope_parameters": {"rope_type": "default", "rope_theta": 1e4,
                                 "partial_rotary_factor": 0.5}},
            "partial_rotary_factor 0.5 is not supported",
        ),
        (
            {"quantization_config": {"quant_method": "awq", "bits": 4}},
            "quantization_config.quant_method awq is not supported",
        ),
    ],
    ids=["gelu", "gemma", "longrope", "partial-rotary", "awq"],
)  # fmt: skip
def test_unserved_config_fields_are_refused_by_name(tmp_path, fields, message):
    config = transformers.LlamaConfig(**SHAPE)
    config.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text()) | fields
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ModelInvalid, match=message):
        ModelConfig.from_dir(tmp_path)


def test_a_checkpoint_that_unties_lm_head_is_served_untied(tmp_path):
    """transformers unties embeddings whose checkpoint holds a different lm_head."""
    save_tiny(tmp_path, "tied")
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["lm_head.weight"] = torch.randn_like(tensors["model.embed_tokens.weight"])
    save_file(tensors, tmp_path / "model.safetensors", {"format": "pt"})
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    executor = Executor(InitConfig(model_path=str(tmp_path), num_pages=1200))
    assert executor.model.weights.lm_head is not executor.model.weights.embed
    assert_generates_as_hf(executor, model.eval(), prompt_lengths=(20,))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.update({"model.layers.0.self_attn.o_proj.bias": torch.ones(64)}),
            r"model\.layers\.0\.self_attn\.o_proj\.bias \(a o_proj bias, which "
            r"LlamaForCausalLM with this config\.json does not have",
        ),
        (
            lambda t: t.update({"model.layers.2.input_layernorm.weight": torch.ones(64)}),
            r"model\.layers\.2\.input_layernorm\.weight \(layer 2 is past num_hidden_layers 2\)",
        ),
        (
            lambda t: t.update({"model.vision_tower.weight": torch.ones(4)}),
            r"model\.vision_tower\.weight \(not a tensor of LlamaForCausalLM\)",
        ),
        (lambda t: t.pop("model.layers.1.mlp.up_proj.weight"), "up_proj.weight is missing"),
    ],
    ids=["o-bias-without-attention-bias", "extra-layer", "foreign", "missing"],
)
def test_every_tensor_is_read_or_the_model_refused(tmp_path, edit, message):
    save_tiny(tmp_path, "llama3-rope")
    tensors = load_file(tmp_path / "model.safetensors")
    edit(tensors)
    save_file(tensors, tmp_path / "model.safetensors", {"format": "pt"})
    with pytest.raises(ModelInvalid, match=message):
        Executor(InitConfig(model_path=str(tmp_path), num_pages=1200))


def test_rotary_inv_freq_buffers_are_recomputed_not_refused(tmp_path):
    model = save_tiny(tmp_path, "default")
    tensors = load_file(tmp_path / "model.safetensors")
    for i in range(SHAPE["num_hidden_layers"]):
        tensors[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    save_file(tensors, tmp_path / "model.safetensors", {"format": "pt"})
    executor = Executor(InitConfig(model_path=str(tmp_path), num_pages=1200))
    assert_generates_as_hf(executor, model, prompt_lengths=(12,))
