"""Llama shapes the benchmark models take: the S-LoRA paper's Llama-2-7B and -13B, and a
tiny one for --smoke runs on CPU. Only the shapes matter: weights are random. They are
the fixtures' LlamaShape, so a model's config.json is written by the fixtures' writer."""

from lorafleet_executor.fixtures.llama_config import LlamaShape


def module_features(shape: LlamaShape) -> dict[str, tuple[int, int]]:
    """(in, out) features of each LoRA-targetable projection."""
    kv = shape.num_key_value_heads * shape.head_dim
    h, i = shape.hidden_size, shape.intermediate_size
    return {
        "q_proj": (h, h),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (h, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }


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
