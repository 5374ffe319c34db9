"""Llama-family variants against HF transformers in fp32: Qwen2 (q/k/v biases), Llama 3
RoPE scaling, linear RoPE scaling, Mistral, tied embeddings. Each model is a tiny random
one saved with transformers into tmp_path."""

import numpy as np
import pytest
import torch

from lorafleet_executor.model.config import ModelConfig, ModelInvalid
from lorafleet_executor.model.rope import inverse_frequencies
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
FAMILIES = {
    "qwen2-bias": (transformers.Qwen2Config, {}),
    "llama3-rope": (transformers.LlamaConfig, {"rope_parameters": LLAMA3_ROPE}),
    "linear-rope": (
        transformers.LlamaConfig,
        {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}},
    ),
    "mistral": (transformers.MistralConfig, {"sliding_window": None}),
    "tied": (transformers.LlamaConfig, {"tie_word_embeddings": True}),
}


def save_tiny(path, family):
    config_class, extra = FAMILIES[family]
    torch.manual_seed(0)
    config = config_class(**SHAPE, **extra)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)  # make Qwen2's biases matter
    model.save_pretrained(path)
    return model.eval()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_matches_hf(tmp_path, family):
    model = save_tiny(tmp_path, family)
    executor = Executor(
        InitConfig(model_path=str(tmp_path), num_pages=1200, max_num_batched_tokens=64)
    )
    if family == "qwen2-bias":
        assert executor.model.weights.layers[0].qkv_bias is not None
    if family == "tied":
        assert executor.model.weights.lm_head is executor.model.weights.embed
    rng = np.random.default_rng(0)
    # prompts past original_max_position (64) so llama3's scaled frequencies matter
    prompts = [rng.integers(0, 300, size=n).tolist() for n in (90, 5)]
    outs = Driver(executor, chunk_size=40).generate(
        [Request(p, max_new_tokens=10, logprobs=3) for p in prompts]
    )
    for prompt, out in zip(prompts, outs, strict=True):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + out.tokens[:-1]])).logits[0]
        ref = torch.log_softmax(logits, -1)[len(prompt) - 1 :]
        assert out.tokens == ref.argmax(-1).tolist()
        np.testing.assert_allclose(
            out.logprobs, ref.gather(1, torch.tensor(out.tokens)[:, None])[:, 0], atol=2e-4
        )


@pytest.mark.parametrize("kind", ["llama3", "linear", "default"])
def test_inverse_frequencies_match_hf(tmp_path, kind):
    rope = {"llama3": LLAMA3_ROPE, "linear": FAMILIES["linear-rope"][1]["rope_parameters"]}.get(
        kind, {"rope_type": "default", "rope_theta": 10000.0}
    )
    config = transformers.LlamaConfig(**SHAPE, rope_parameters=rope)
    config.save_pretrained(tmp_path)
    ours = ModelConfig.from_dir(tmp_path)
    hf_rope = transformers.models.llama.modeling_llama.LlamaRotaryEmbedding(config)
    torch.testing.assert_close(
        inverse_frequencies(ours.rope, ours.head_dim, ours.max_position), hf_rope.inv_freq
    )


def test_config_edge_cases(tmp_path):
    config = transformers.MistralConfig(**SHAPE, sliding_window=128)
    config.save_pretrained(tmp_path)
    assert ModelConfig.from_dir(tmp_path).max_position == 128  # capped at the window
    config = transformers.LlamaConfig(
        **SHAPE, rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}
    )
    config.save_pretrained(tmp_path)
    with pytest.raises(ModelInvalid, match="yarn"):
        ModelConfig.from_dir(tmp_path)
    config = transformers.LlamaConfig(**SHAPE, hidden_act="gelu")
    config.save_pretrained(tmp_path)
    with pytest.raises(ModelInvalid, match="gelu"):
        ModelConfig.from_dir(tmp_path)
