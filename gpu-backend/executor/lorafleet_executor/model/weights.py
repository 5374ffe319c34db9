"""The base model's weights, read from *.safetensors into fused, device-resident tensors.

q/k/v are fused into one [q_out + 2*kv_out, hidden] matrix and gate/up into one
[2*intermediate, hidden] matrix, so each layer runs four base GEMMs. Those projections
are dense or FP8 (linear.py; projection_reader.py decides from the checkpoint and the
Fp8Plan); embeddings, norms, biases and lm_head stay in the model's dtype.

Loading is strict: every tensor of the checkpoint is read or the model is refused with
a ModelInvalid naming the tensors left over and why (a bias the config says the model
does not have, a layer past num_hidden_layers, a tensor of another architecture):
serving without a tensor the checkpoint holds would silently compute another model.

Under tensor parallelism a `WeightSplit` (parallel/sharded_weights.py) says which rows
and columns this process holds; only those bytes are read.

Example:
    w = ModelWeights.load(cfg, "/models/tiny-llama", torch.float32, torch.device("cpu"))
    w.layers[0].qkv.shape  # (q_out + 2 * kv_out, hidden)
"""

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from .config import ModelConfig, ModelInvalid
from .linear import Projection, nbytes
from .projection_reader import Fp8Plan, ProjectionReader
from .tensor_reader import TensorReader

log = logging.getLogger("lorafleet_executor.model.weights")


@dataclass
class LayerWeights:
    input_norm: torch.Tensor  # [hidden]
    qkv: Projection  # [q_out + 2 * kv_out, hidden]
    qkv_bias: torch.Tensor | None  # [q_out + 2 * kv_out] (Qwen2; Llama's attention_bias)
    o: Projection  # [hidden, q_out]
    post_norm: torch.Tensor  # [hidden]
    gate_up: Projection  # [2 * intermediate, hidden]
    down: Projection  # [hidden, intermediate]
    # Row-parallel biases are whole on every rank and added once, after the all-reduce.
    o_bias: torch.Tensor | None = None  # [hidden] (Llama's attention_bias)
    gate_up_bias: torch.Tensor | None = None  # [2 * intermediate] (Llama's mlp_bias)
    down_bias: torch.Tensor | None = None  # [hidden] (Llama's mlp_bias)


@dataclass
class ModelWeights:
    embed: torch.Tensor  # [vocab, hidden]
    layers: list[LayerWeights]
    norm: torch.Tensor  # [hidden]
    lm_head: torch.Tensor  # [vocab, hidden]; the embedding itself when tied

    def nbytes(self) -> int:
        parts = [self.embed, self.norm] + ([] if self.lm_head is self.embed else [self.lm_head])
        for layer in self.layers:
            parts += list(vars(layer).values())
        return sum(nbytes(p) for p in parts)

    @staticmethod
    def load(
        cfg: ModelConfig,
        path: str | Path,
        dtype: torch.dtype,
        device: torch.device,
        split: "WeightSplit | None" = None,
        fp8: Fp8Plan | None = None,
    ) -> "ModelWeights":
        """`fp8`: how projections are served in FP8 (None: dense; an FP8 checkpoint
        needs one)."""
        split = split or WholeModel(cfg)
        reader = TensorReader(Path(path), dtype, device)
        projections = ProjectionReader(reader, cfg.fp8_checkpoint, fp8)
        layers = []
        for i in range(cfg.num_layers):
            layers.append(_load_layer(cfg, reader, projections, split, i))
            if fp8 is not None and fp8.quantize_dense:
                log.info("quantizing to fp8: layer %d/%d", i + 1, cfg.num_layers)
        vocab = split.vocab_rows()
        rows, pad = (None, 0) if vocab is None else vocab
        embed = F.pad(reader.take("model.embed_tokens.weight", rows=rows), (0, 0, 0, pad))
        lm_head = embed
        if reader.has("lm_head.weight"):
            # transformers unties a checkpoint whose lm_head differs from its embedding
            head = F.pad(reader.take("lm_head.weight", rows=rows), (0, 0, 0, pad))
            lm_head = embed if cfg.tie_word_embeddings and torch.equal(head, embed) else head
        elif not cfg.tie_word_embeddings:
            raise ModelInvalid("lm_head.weight is missing and tie_word_embeddings is false")
        weights = ModelWeights(
            embed=embed, layers=layers, norm=reader.take("model.norm.weight"), lm_head=lm_head
        )
        reader.check_all_read(cfg)
        _check_shapes(replace(split.local, vocab_size=embed.shape[0]), weights)
        return weights


class WeightSplit(Protocol):
    """Which part of each weight this process holds (Megatron's split under tensor
    parallelism); None: all of it."""

    local: ModelConfig  # the model this process computes

    def rows(self, module: str) -> tuple[int, int] | None:
        """A column-parallel module's output rows [start, end)."""
        ...

    def cols(self, module: str) -> tuple[int, int] | None:
        """A row-parallel module's input columns [start, end)."""
        ...

    def vocab_rows(self) -> tuple[tuple[int, int], int] | None:
        """The embedding's and lm_head's rows [start, end) and the zero rows padded after."""
        ...


class WholeModel:
    """The split of one process that holds every weight."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.local = cfg

    def rows(self, module: str) -> None:
        return None

    def cols(self, module: str) -> None:
        return None

    def vocab_rows(self) -> None:
        return None


def _load_layer(
    cfg: ModelConfig,
    reader: TensorReader,
    projections: ProjectionReader,
    split: WeightSplit,
    i: int,
) -> LayerWeights:
    p = f"model.layers.{i}."
    names = {m: f"{p}self_attn.{m}_proj" for m in "qkvo"} | {
        m: f"{p}mlp.{m}_proj" for m in ("gate", "up", "down")
    }

    def column(modules: tuple[str, ...]) -> Projection:
        parts = [(names[m], split.rows(m)) for m in modules]
        return projections.read_stacked(parts, f"layer {i} {'/'.join(modules)}")

    def column_bias(modules: tuple[str, ...]) -> torch.Tensor:
        return torch.cat([reader.take(f"{names[m]}.bias", rows=split.rows(m)) for m in modules])

    def row(module: str) -> Projection:
        return projections.read(names[module], cols=split.cols(module))

    def bias(module: str) -> torch.Tensor:
        return reader.take(f"{names[module]}.bias")

    return LayerWeights(
        input_norm=reader.take(f"{p}input_layernorm.weight"),
        qkv=column(("q", "k", "v")),
        qkv_bias=column_bias(("q", "k", "v")) if cfg.qkv_bias else None,
        o=row("o"),
        o_bias=bias("o") if cfg.o_bias else None,
        post_norm=reader.take(f"{p}post_attention_layernorm.weight"),
        gate_up=column(("gate", "up")),
        gate_up_bias=column_bias(("gate", "up")) if cfg.mlp_bias else None,
        down=row("down"),
        down_bias=bias("down") if cfg.mlp_bias else None,
    )


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
            f"layer {n} qkv bias": (layer.qkv_bias, (q_out + 2 * kv_out,)),
            f"layer {n} o": (layer.o, (h, q_out)),
            f"layer {n} o bias": (layer.o_bias, (h,)),
            f"layer {n} gate_up": (layer.gate_up, (2 * i, h)),
            f"layer {n} gate_up bias": (layer.gate_up_bias, (2 * i,)),
            f"layer {n} down": (layer.down, (h, i)),
            f"layer {n} down bias": (layer.down_bias, (h,)),
            f"layer {n} input_norm": (layer.input_norm, (h,)),
            f"layer {n} post_norm": (layer.post_norm, (h,)),
        }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ModelInvalid(f"{name} has shape {tuple(tensor.shape)}, config says {shape}")
