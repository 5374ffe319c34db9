"""Named tensors of every *.safetensors shard of a model directory, read one at a time
(or only a tensor-parallel rank's rows / columns), remembering which were read, so a
checkpoint whose tensors are not all read is refused by name (`check_all_read`).

Example:
    reader = TensorReader(Path("/models/tiny-llama"), torch.float32, torch.device("cpu"))
    norm = reader.take("model.norm.weight")
    reader.check_all_read(cfg)   # ModelInvalid naming what is left, and why
"""

import re
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import ModelInvalid
from .config import ModelConfig

# Buffers some checkpoints carry that transformers recomputes from config.json.
_DERIVED = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")
_FP8_DTYPES = ("F8_E4M3", "F8_E5M2")
Range = tuple[int, int] | None  # rows or columns [start, end); None: all


class TensorReader:
    def __init__(self, root: Path, dtype: torch.dtype, device: torch.device) -> None:
        files = sorted(root.glob("*.safetensors"))
        if not files:
            raise ModelInvalid(f"{root} holds no *.safetensors")
        self.dtype, self.device = dtype, device
        self._where: dict[str, Path] = {}
        for f in files:
            with safe_open(f, framework="pt") as st:
                for name in st.keys():  # noqa: SIM118 - safe_open has no __iter__
                    self._where[name] = f
        self._read = {name for name in self._where if _DERIVED.fullmatch(name)}

    def has(self, name: str) -> bool:
        return name in self._where

    def is_fp8(self, name: str) -> bool:
        return self.has(name) and self._slice_info(name)[0] in _FP8_DTYPES

    def shape(self, name: str) -> tuple[int, ...]:
        return self._slice_info(name)[1]

    def take(self, name: str, rows: Range = None, cols: Range = None) -> torch.Tensor:
        """The tensor in the model's dtype, or only its rows / columns [start, end) (a
        tensor-parallel rank's share: only those bytes are read)."""
        if self.is_fp8(name):
            raise ModelInvalid(
                f"{name} is float8: only the q k v o gate up down projections are served in FP8"
            )
        return self.take_stored(name, rows, cols).to(self.dtype)

    def take_stored(self, name: str, rows: Range = None, cols: Range = None) -> torch.Tensor:
        """As `take`, in the dtype the checkpoint stores (float8 weights, their scales)."""
        if name not in self._where:
            raise ModelInvalid(f"weight {name} is missing")
        with safe_open(self._where[name], framework="pt") as st:
            if rows is None and cols is None:
                t = st.get_tensor(name)
            else:
                part = st.get_slice(name)
                r = slice(*rows) if rows else slice(None)
                t = part[r] if cols is None else part[r, slice(*cols)]
        self._read.add(name)
        return t.to(device=self.device).contiguous()

    def check_all_read(self, cfg: ModelConfig) -> None:
        left = sorted(set(self._where) - self._read)
        if left:
            shown = "; ".join(f"{name} ({_why_unread(name, cfg)})" for name in left[:5])
            more = f"; and {len(left) - 5} more" if len(left) > 5 else ""
            raise ModelInvalid(
                f"the checkpoint holds {len(left)} tensor(s) this model does not read, "
                f"so it would be served wrong: {shown}{more}"
            )

    def _slice_info(self, name: str) -> tuple[str, tuple[int, ...]]:
        if name not in self._where:
            raise ModelInvalid(f"weight {name} is missing")
        with safe_open(self._where[name], framework="pt") as st:
            part = st.get_slice(name)
            return part.get_dtype(), tuple(part.get_shape())


_BIASES = {
    "self_attn.o_proj.bias": "o_proj bias",
    "self_attn.q_proj.bias": "q/k/v bias",
    "self_attn.k_proj.bias": "q/k/v bias",
    "self_attn.v_proj.bias": "q/k/v bias",
    "mlp.gate_proj.bias": "MLP bias",
    "mlp.up_proj.bias": "MLP bias",
    "mlp.down_proj.bias": "MLP bias",
}


def _why_unread(name: str, cfg: ModelConfig) -> str:
    layer = re.match(r"model\.layers\.(\d+)\.(.*)", name)
    if layer and int(layer[1]) >= cfg.num_layers:
        return f"layer {layer[1]} is past num_hidden_layers {cfg.num_layers}"
    rest = layer[2] if layer else name
    if rest in _BIASES:
        return (
            f"a {_BIASES[rest]}, which {cfg.architecture} with this config.json does not have "
            f"(Llama: attention_bias / mlp_bias)"
        )
    if rest.endswith(("input_scale", "weight_scale", "weight_scale_inv")):
        return "an FP8 scale config.json's quantization_config does not use"
    return f"not a tensor of {cfg.architecture}"
