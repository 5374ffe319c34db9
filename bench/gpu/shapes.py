"""Llama shapes the benchmark models take: the S-LoRA paper's Llama-2-7B and -13B, and a
tiny one for --smoke runs on CPU. Only the shapes matter: weights are random. They are
the fixtures' LlamaShape, so a model's config.json is written by the fixtures' writer,
and `model_config` gives the executor's ModelConfig of one (its projection shapes too)."""

from lorafleet_executor.fixtures.llama_config import LlamaShape
from lorafleet_executor.model.config import ModelConfig, RopeConfig


def model_config(shape: LlamaShape) -> ModelConfig:
    return ModelConfig(
        architecture="LlamaForCausalLM",
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_layers=shape.num_hidden_layers,
        num_heads=shape.num_attention_heads,
        num_kv_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,
        vocab_size=shape.vocab_size,
        rms_norm_eps=1e-5,
        rope=RopeConfig(theta=10000.0, kind="default"),
        max_position=shape.max_position_embeddings,
        tie_word_embeddings=False,
        qkv_bias=False,
        eos_token_ids=(2,),
    )


def module_features(shape: LlamaShape) -> dict[str, tuple[int, int]]:
    """(in, out) features of each LoRA-targetable projection, by its HF name."""
    return {f"{m}_proj": io for m, io in model_config(shape).module_shapes().items()}


SHAPES = {
    "llama-2-7b": LlamaShape(32000, 4096, 11008, 32, 32, 32, 4096),
    "llama-2-13b": LlamaShape(32000, 5120, 13824, 40, 40, 40, 4096),
    # GQA and a vocab above the tokenizer's, like the real shapes' 32000 over a small tokenizer.
    "tiny": LlamaShape(1024, 64, 160, 2, 4, 2, 1024),
}

# Which HF submodule holds each projection.
MODULE_PARENT = {
    "q_proj": "self_attn",
    "k_proj": "self_attn",
    "v_proj": "self_attn",
    "o_proj": "self_attn",
    "gate_proj": "mlp",
    "up_proj": "mlp",
    "down_proj": "mlp",
}
