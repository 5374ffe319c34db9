"""The base model's shape and math, read from an HF-format directory (config.json +
generation_config.json) as transformers reads them for the architectures served.

Every config.json field that transformers' Llama, Mistral or Qwen2 code reads and that
changes the output is either served exactly (and tested against transformers,
tests/test_model_families.py) or refused here with a ModelInvalid naming the field and
its value. The fields transformers reads only for training or speed (attention_dropout,
pad_token_id, _attn_implementation, use_cache, ...) are left alone.

Example:
    cfg = ModelConfig.from_dir("/models/smollm2-135m-instruct")
    cfg.num_kv_heads * cfg.head_dim  # the pool's page width W
"""

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelInvalid
from .fp8_checkpoint import Fp8Checkpoint, fp8_checkpoint
from .rope_config import RopeConfig, rope_config, rope_max_position

__all__ = ["ModelConfig", "ModelInvalid", "RopeConfig"]


@dataclass(frozen=True)
class _Architecture:
    """What transformers' modeling code of one architecture reads, and its config defaults."""

    max_position_embeddings: int
    sliding_window: int | None  # the default when config.json has no such key
    # Biases: "always", "never", or the config flag that switches them (Llama's).
    qkv_bias: str
    o_bias: str
    mlp_bias: str


ARCHITECTURES = {
    "LlamaForCausalLM": _Architecture(2048, None, "attention_bias", "attention_bias", "mlp_bias"),
    "MistralForCausalLM": _Architecture(131072, 4096, "never", "never", "never"),
    "Qwen2ForCausalLM": _Architecture(32768, 4096, "always", "never", "never"),
}

MODEL_TYPES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    rope: RopeConfig
    max_position: int
    tie_word_embeddings: bool
    qkv_bias: bool
    eos_token_ids: tuple[int, ...]
    o_bias: bool = False
    mlp_bias: bool = False  # gate, up and down
    fp8_checkpoint: Fp8Checkpoint | None = None  # the checkpoint's own FP8 format

    @property
    def page_width(self) -> int:
        return self.num_kv_heads * self.head_dim

    def module_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of every LoRA-targetable projection, canonical order."""
        q_out = self.num_heads * self.head_dim
        kv_out = self.num_kv_heads * self.head_dim
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q": (h, q_out),
            "k": (h, kv_out),
            "v": (h, kv_out),
            "o": (q_out, h),
            "gate": (h, i),
            "up": (h, i),
            "down": (i, h),
        }

    @staticmethod
    def from_dir(path: str | Path) -> "ModelConfig":
        root = Path(path)
        raw = _read_json(root / "config.json")
        arch_name = _architecture(raw)
        arch = ARCHITECTURES[arch_name]
        _refuse_unserved(raw)
        try:
            hidden = int(raw["hidden_size"])
            heads = int(raw["num_attention_heads"])
            max_position_embeddings = int(
                raw.get("max_position_embeddings") or arch.max_position_embeddings
            )
            rope = rope_config(raw, max_position_embeddings)
            cfg = ModelConfig(
                architecture=arch_name,
                hidden_size=hidden,
                intermediate_size=int(raw["intermediate_size"]),
                num_layers=int(raw["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(raw.get("num_key_value_heads") or heads),
                head_dim=int(raw.get("head_dim") or hidden // heads),
                vocab_size=int(raw["vocab_size"]),
                rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                rope=rope,
                max_position=_max_position(
                    raw, arch, rope_max_position(rope, max_position_embeddings)
                ),
                tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
                qkv_bias=_bias(raw, arch.qkv_bias),
                o_bias=_bias(raw, arch.o_bias),
                mlp_bias=_bias(raw, arch.mlp_bias),
                eos_token_ids=_eos_token_ids(raw, root),
                fp8_checkpoint=fp8_checkpoint(raw.get("quantization_config")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelInvalid(f"config.json: bad or missing field: {e}") from e
        if cfg.num_heads % cfg.num_kv_heads:
            raise ModelInvalid(
                f"num_attention_heads {cfg.num_heads} is not a multiple of "
                f"num_key_value_heads {cfg.num_kv_heads}"
            )
        if cfg.head_dim % 2:
            raise ModelInvalid(f"head_dim {cfg.head_dim} is odd: RoPE rotates half-heads")
        return cfg


def _architecture(raw: dict) -> str:
    # transformers' Auto classes build the model of `model_type`, whatever
    # `architectures` says
    model_type = raw.get("model_type")
    if model_type is not None:
        if model_type not in MODEL_TYPES:
            raise ModelInvalid(
                f"model_type {model_type} is not supported ({', '.join(MODEL_TYPES)})"
            )
        return MODEL_TYPES[model_type]
    name = (raw.get("architectures") or ["LlamaForCausalLM"])[0]
    if name not in ARCHITECTURES:
        raise ModelInvalid(f"architecture {name} is not supported ({', '.join(ARCHITECTURES)})")
    return name


def _refuse_unserved(raw: dict) -> None:
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ModelInvalid(f"hidden_act {act} is not supported (silu)")


def _bias(raw: dict, rule: str) -> bool:
    return rule == "always" or (rule != "never" and bool(raw.get(rule, False)))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ModelInvalid(f"{path} is missing") from e
    except json.JSONDecodeError as e:
        raise ModelInvalid(f"{path} is not valid JSON: {e}") from e


def _max_position(raw: dict, arch: _Architecture, rope_limit: int) -> int:
    """The RoPE limit, capped at a sliding window: past the window transformers attends
    to the last `sliding_window` keys only, which the paged attention does not; within
    it the two are the same."""
    window = raw.get("sliding_window", arch.sliding_window)
    if window and _uses_window(raw, arch):
        return min(rope_limit, int(window))
    return rope_limit


def _uses_window(raw: dict, arch: _Architecture) -> bool:
    if arch is ARCHITECTURES["MistralForCausalLM"]:
        return True
    if arch is ARCHITECTURES["Qwen2ForCausalLM"] and raw.get("use_sliding_window", False):
        # transformers' Qwen2: layers from max_window_layers on slide, unless layer_types says
        layers = raw.get("layer_types") or [
            "sliding_attention" if i >= int(raw.get("max_window_layers", 28)) else "full_attention"
            for i in range(int(raw["num_hidden_layers"]))
        ]
        return "sliding_attention" in layers
    return False  # Llama has no sliding window


def _eos_token_ids(raw: dict, root: Path) -> tuple[int, ...]:
    ids: list[int] = []
    sources = [raw.get("eos_token_id")]
    gen_path = root / "generation_config.json"
    if gen_path.exists():
        sources.append(_read_json(gen_path).get("eos_token_id"))
    for value in sources:
        for token in value if isinstance(value, list) else [value]:
            if token is not None and int(token) not in ids:
                ids.append(int(token))
    return tuple(ids)
