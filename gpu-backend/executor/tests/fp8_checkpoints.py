"""FP8 checkpoints for tests, written from a dense HF directory in the formats FP8 releases
use (model/fp8_checkpoint.py), and the reference they must compute: transformers' model
whose seven projections hold the dequantized weights and quantize their input per token
(quantize, dequantize: what the FP8 GEMM computes, in float32).

Example:
    dequantized = write_fp8_checkpoint(dense_dir, fp8_dir, "ct-channel")
    model = fake_fp8(transformers.AutoModelForCausalLM.from_pretrained(dense_dir), dequantized)
"""

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lorafleet_executor.kernels.fp8_gemm import dequantize_weight
from lorafleet_executor.kernels.fp8_quant import (
    FP8_MAX,
    quantize_blocks_reference,
    quantize_rows_reference,
)

PROJECTION = re.compile(r"model\.layers\.\d+\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.weight")

_CT_GROUP = {
    "targets": ["Linear"],
    "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True,
                          "symmetric": True},
    "output_activations": None,
}  # fmt: skip


def _ct_config(strategy: str, block: list[int] | None = None) -> dict:
    weights = {"num_bits": 8, "type": "float", "strategy": strategy, "dynamic": False,
               "symmetric": True, "block_structure": block, "observer": "minmax"}  # fmt: skip
    return {
        "quant_method": "compressed-tensors",
        "format": "float-quantized",
        "quantization_status": "compressed",
        "ignore": ["lm_head"],
        "kv_cache_scheme": None,
        "config_groups": {"group_0": {**_CT_GROUP, "weights": weights}},
    }


FORMATS = {
    # transformers' fine-grained FP8 (DeepSeek-V3 style): weight_scale_inv per 128x128 block
    "hf-block": (
        {
            "quant_method": "fp8",
            "fmt": "e4m3",
            "activation_scheme": "dynamic",
            "weight_block_size": [128, 128],
        },
        "weight_scale_inv",
        "block",
    ),  # fmt: skip
    "hf-tensor": (
        {"quant_method": "fp8", "activation_scheme": "dynamic"},
        "weight_scale_inv",
        "tensor",
    ),  # fmt: skip
    # llm-compressor's FP8_DYNAMIC (per channel), FP8_BLOCK and per-tensor weights
    "ct-channel": (_ct_config("channel"), "weight_scale", "channel"),
    "ct-block": (_ct_config("block", [128, 128]), "weight_scale", "block"),
    "ct-tensor": (_ct_config("tensor"), "weight_scale", "tensor"),
}


def quantize(w: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(float8 weight, its scale as the checkpoint stores it, the dequantized weight)."""
    w = w.float()
    if kind == "channel":
        q, scale = quantize_rows_reference(w)
        return (
            q,
            scale[:, None].to(torch.bfloat16),
            dequantize_weight(q, scale.bfloat16().float(), None),
        )
    if kind == "tensor":
        scale = w.abs().amax().clamp(min=1e-12) / FP8_MAX
        q = (w / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
        return q, scale.reshape(1), q.float() * scale
    q, scale = quantize_blocks_reference(w, (128, 128))
    return q, scale, dequantize_weight(q, scale, (128, 128))


def write_fp8_checkpoint(src: Path, dst: Path, fmt: str) -> dict[str, torch.Tensor]:
    """Copies the HF directory `src` to `dst` with its projections in FP8 format `fmt`;
    returns the dequantized weight of every projection, by tensor name."""
    quantization_config, scale_suffix, kind = FORMATS[fmt]
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, dst / f.name)
    config = json.loads((dst / "config.json").read_text())
    config["quantization_config"] = quantization_config
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    tensors, dequantized = {}, {}
    for name, t in load_file(src / "model.safetensors").items():
        if not PROJECTION.fullmatch(name):
            tensors[name] = t
            continue
        q, scale, dequantized[name] = quantize(t, kind)
        tensors[name] = q
        tensors[name.removesuffix("weight") + scale_suffix] = scale
    save_file(tensors, dst / "model.safetensors", {"format": "pt"})
    return dequantized


def fake_quantized_input(x: torch.Tensor) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    q, scale = quantize_rows_reference(rows)
    return (q.float() * scale[:, None]).to(x.dtype).reshape(x.shape)


def fake_fp8(model: torch.nn.Module, dequantized: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The transformers (or PEFT) model computing as the FP8 model does: each projection's
    weight dequantized and its input quantized per token. LoRA layers around a projection
    still see the unquantized input."""
    for module_name, module in model.named_modules():
        key = module_name.replace("base_model.model.", "").replace(".base_layer", "") + ".weight"
        if isinstance(module, torch.nn.Linear) and key in dequantized:
            with torch.no_grad():
                module.weight.copy_(dequantized[key])
            module.forward = _fake_quantized_forward(module)
    return model


def _fake_quantized_forward(linear: torch.nn.Linear):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(fake_quantized_input(x), linear.weight, linear.bias)

    return forward
