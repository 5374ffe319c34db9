"""The base model's weights, read from *.safetensors into fused, device-resident tensors.

q/k/v are fused into one [q_out + 2*kv_out, hidden] matrix and gate/up into one
[2*intermediate, hidden] matrix, so each layer runs four base GEMMs.

Example:
    w = ModelWeights.load(cfg, "/models/tiny-llama", torch.float32, torch.device("cpu"))
    w.layers[0].qkv.shape  # (q_out + 2 * kv_out, hidden)
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from .config import ModelConfig, ModelInvalid


@dataclass
class LayerWeights:
    input_norm: torch.Tensor  # [hidden]
    qkv: torch.Tensor  # [q_out + 2 * kv_out, hidden]
    qkv_bias: torch.Tensor | None  # [q_out + 2 * kv_out] (Qwen2)
    o: torch.Tensor  # [hidden, q_out]
    post_norm: torch.Tensor  # [hidden]
    gate_up: torch.Tensor  # [2 * intermediate, hidden]
    down: torch.Tensor  # [hidden, intermediate]


@dataclass
class ModelWeights:
    embed: torch.Tensor  # [vocab, hidden]
    layers: list[LayerWeights]
    norm: torch.Tensor  # [hidden]
    lm_head: torch.Tensor  # [vocab, hidden]; the embedding itself when tied

    def nbytes(self) -> int:
        tensors = [self.embed, self.norm] + ([] if self.lm_head is self.embed else [self.lm_head])
        for layer in self.layers:
            tensors += [t for t in vars(layer).values() if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)

    @staticmethod
    def load(
        cfg: ModelConfig, path: str | Path, dtype: torch.dtype, device: torch.device
    ) -> "ModelWeights":
        reader = _TensorReader(Path(path), dtype, device)
        layers = []
        for i in range(cfg.num_layers):
            p = f"model.layers.{i}."
            attn = [reader.take(f"{p}self_attn.{m}_proj.weight") for m in "qkv"]
            mlp = [reader.take(f"{p}mlp.{m}_proj.weight") for m in ("gate", "up")]
            layers.append(
                LayerWeights(
                    input_norm=reader.take(f"{p}input_layernorm.weight"),
                    qkv=torch.cat(attn, 0),
                    qkv_bias=(
                        torch.cat([reader.take(f"{p}self_attn.{m}_proj.bias") for m in "qkv"])
                        if cfg.qkv_bias
                        else None
                    ),
                    o=reader.take(f"{p}self_attn.o_proj.weight"),
                    post_norm=reader.take(f"{p}post_attention_layernorm.weight"),
                    gate_up=torch.cat(mlp, 0),
                    down=reader.take(f"{p}mlp.down_proj.weight"),
                )
            )
        embed = reader.take("model.embed_tokens.weight")
        has_head = reader.has("lm_head.weight")
        weights = ModelWeights(
            embed=embed,
            layers=layers,
            norm=reader.take("model.norm.weight"),
            lm_head=reader.take("lm_head.weight") if has_head else embed,
        )
        if not has_head and not cfg.tie_word_embeddings:
            raise ModelInvalid("lm_head.weight is missing and tie_word_embeddings is false")
        _check_shapes(cfg, weights)
        return weights


class _TensorReader:
    """Reads named tensors from every *.safetensors shard of a directory, one at a time."""

    def __init__(self, root: Path, dtype: torch.dtype, device: torch.device) -> None:
        files = sorted(root.glob("*.safetensors"))
        if not files:
            raise ModelInvalid(f"{root} holds no *.safetensors")
        self._dtype, self._device = dtype, device
        self._where: dict[str, Path] = {}
        for f in files:
            with safe_open(f, framework="pt") as st:
                for name in st.keys():  # noqa: SIM118 - safe_open has no __iter__
                    self._where[name] = f

    def has(self, name: str) -> bool:
        return name in self._where

    def take(
        self,
        name: str,
        rows: tuple[int, int] | None = None,
        cols: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """The tensor, or only its rows / columns [start, end) (a tensor-parallel rank's
        share: only those bytes are read)."""
        if name not in self._where:
            raise ModelInvalid(f"weight {name} is missing")
        with safe_open(self._where[name], framework="pt") as st:
            if rows is None and cols is None:
                t = st.get_tensor(name)
            else:
                part = st.get_slice(name)
                r = slice(*rows) if rows else slice(None)
                t = part[r] if cols is None else part[r, slice(*cols)]
        return t.to(device=self._device, dtype=self._dtype).contiguous()


def _check_shapes(cfg: ModelConfig, w: ModelWeights) -> None:
    h, i = cfg.hidden_size, cfg.intermediate_size
    q_out, kv_out = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    expected = {
        "embed": (w.embed, (cfg.vocab_size, h)),
        "lm_head": (w.lm_head, (cfg.vocab_size, h)),
        "norm": (w.norm, (h,)),
    }
    for n, layer in enumerate(w.layers):
        expected |= {
            f"layer {n} qkv": (layer.qkv, (q_out + 2 * kv_out, h)),
            f"layer {n} o": (layer.o, (h, q_out)),
            f"layer {n} gate_up": (layer.gate_up, (2 * i, h)),
            f"layer {n} down": (layer.down, (h, i)),
            f"layer {n} input_norm": (layer.input_norm, (h,)),
            f"layer {n} post_norm": (layer.post_norm, (h,)),
        }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ModelInvalid(f"{name} has shape {tuple(tensor.shape)}, config says {shape}")
