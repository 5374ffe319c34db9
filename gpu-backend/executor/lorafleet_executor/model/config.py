"""The base model's shape, read from an HF-format directory (config.json + generation_config.json).

Example:
    cfg = ModelConfig.from_dir("/models/smollm2-135m-instruct")
    cfg.num_kv_heads * cfg.head_dim  # the pool's page width W
"""

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExecutorError

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")


class ModelInvalid(ExecutorError):
    """The model directory cannot be served: missing files, unsupported architecture or shapes."""

    code = "bad_message"


@dataclass(frozen=True)
class RopeConfig:
    theta: float
    kind: str  # default | linear | dynamic | llama3
    factor: float = 1.0
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    original_max_position: int = 0  # llama3 / dynamic: the pretraining context


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
        arch = (raw.get("architectures") or ["LlamaForCausalLM"])[0]
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ModelInvalid(f"architecture {arch} is not supported ({SUPPORTED_ARCHITECTURES})")
        if raw.get("hidden_act", "silu") != "silu":
            raise ModelInvalid(f"hidden_act {raw['hidden_act']} is not supported (silu)")
        if raw.get("mlp_bias"):
            raise ModelInvalid("mlp_bias is not supported")
        try:
            hidden = int(raw["hidden_size"])
            heads = int(raw["num_attention_heads"])
            cfg = ModelConfig(
                architecture=arch,
                hidden_size=hidden,
                intermediate_size=int(raw["intermediate_size"]),
                num_layers=int(raw["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(raw.get("num_key_value_heads") or heads),
                head_dim=int(raw.get("head_dim") or hidden // heads),
                vocab_size=int(raw["vocab_size"]),
                rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                rope=_rope_config(raw),
                max_position=_max_position(raw),
                tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
                # Qwen2 always carries q/k/v biases; Llama-style configs say so by flag.
                qkv_bias=arch == "Qwen2ForCausalLM" or bool(raw.get("attention_bias", False)),
                eos_token_ids=_eos_token_ids(raw, root),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelInvalid(f"config.json: bad or missing field: {e}") from e
        if cfg.num_heads % cfg.num_kv_heads:
            raise ModelInvalid(
                f"num_attention_heads {cfg.num_heads} is not a multiple of "
                f"num_key_value_heads {cfg.num_kv_heads}"
            )
        return cfg


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ModelInvalid(f"{path} is missing") from e
    except json.JSONDecodeError as e:
        raise ModelInvalid(f"{path} is not valid JSON: {e}") from e


def _rope_config(raw: dict) -> RopeConfig:
    # transformers >= 5 writes `rope_parameters` (theta inside); older configs use
    # `rope_theta` + `rope_scaling` (with `type` in some Llama 2 era files).
    params = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", raw.get("rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", "linear", "dynamic", "llama3"):
        raise ModelInvalid(f"rope type {kind} is not supported (default, linear, dynamic, llama3)")
    return RopeConfig(
        theta=theta,
        kind=kind,
        factor=float(params.get("factor", 1.0)),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        original_max_position=int(
            params.get("original_max_position_embeddings", raw.get("max_position_embeddings", 0))
        ),
    )


def _max_position(raw: dict) -> int:
    max_pos = int(raw.get("max_position_embeddings", 2048))
    params = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    if params.get("rope_type", params.get("type")) == "dynamic":
        # Dynamic NTK is applied as vLLM does: one base stretched for factor x the context.
        max_pos = int(max_pos * float(params.get("factor", 1.0)))
    # A sliding window we do not implement would change attention past the window, so
    # contexts are capped at it; within it full attention is exact.
    window = raw.get("sliding_window")
    use_window = raw.get("use_sliding_window", raw.get("model_type") == "mistral")
    if window and use_window:
        max_pos = min(max_pos, int(window))
    return max_pos


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
