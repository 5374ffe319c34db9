"""The FP8 formats of the checkpoints common FP8 releases use, read from config.json's
`quantization_config`; anything else there is refused by name.

- transformers' fine-grained FP8 (`quant_method: "fp8"`, DeepSeek-V3 / Qwen3 FP8 style):
  `<module>.weight` float8_e4m3fn and `<module>.weight_scale_inv` float32, one scale per
  `weight_block_size` block (128 x 128), or one per tensor without a block size;
  W = weight · weight_scale_inv. Activations `activation_scheme: "dynamic"`.
- compressed-tensors as llm-compressor writes it (`quant_method: "compressed-tensors"`,
  `format: "float-quantized"`, FP8_DYNAMIC / FP8_BLOCK schemes): `<module>.weight`
  float8_e4m3fn and `<module>.weight_scale` ([out, 1] per channel, [1] per tensor,
  [ceil(out/bn), ceil(in/bk)] per block); W = weight · weight_scale. Input activations
  `dynamic: true` (per token, or per group of a block scheme).

Which projections are FP8 is read from the tensors themselves (float8 with a scale
beside it); the others (e.g. `ignore`d ones) stay dense. Activations are quantized per
token in every case (a block scheme's per-group activation scales are not kept: one
scale per token is coarser, and what the executor's GEMM takes). Static activation
scales, KV-cache quantization, e5m2 and integer schemes are refused.

Example:
    fmt = fp8_checkpoint(raw["quantization_config"])   # None without one
    fmt.scale_suffix, fmt.kind, fmt.block               # ("weight_scale_inv", "block", (128, 128))
"""

from dataclasses import dataclass

from ..errors import ModelInvalid


@dataclass(frozen=True)
class Fp8Checkpoint:
    scale_suffix: str  # the scale tensor beside `<module>.weight`
    kind: str  # "channel" | "tensor" | "block"
    block: tuple[int, int] | None  # (rows, columns) of a block, when kind == "block"


def fp8_checkpoint(config: dict | None) -> Fp8Checkpoint | None:
    if not config:
        return None
    method = config.get("quant_method")
    if method == "fp8":
        return _hf_fp8(config)
    if method == "compressed-tensors":
        return _compressed_tensors(config)
    raise ModelInvalid(
        f"quantization_config.quant_method {method} is not supported (fp8, compressed-tensors)"
    )


def _hf_fp8(config: dict) -> Fp8Checkpoint:
    fmt = config.get("fmt", "e4m3")
    if fmt != "e4m3":
        raise ModelInvalid(f"quantization_config.fmt {fmt} is not supported (e4m3)")
    scheme = config.get("activation_scheme", "dynamic")
    if scheme != "dynamic":
        raise ModelInvalid(
            f"quantization_config.activation_scheme {scheme} is not supported (dynamic)"
        )
    block = config.get("weight_block_size")
    if block is None:
        return Fp8Checkpoint("weight_scale_inv", "tensor", None)
    return Fp8Checkpoint("weight_scale_inv", "block", _block(block, "weight_block_size"))


def _compressed_tensors(config: dict) -> Fp8Checkpoint:
    fmt = config.get("format", "float-quantized")
    if fmt != "float-quantized":
        raise ModelInvalid(f"quantization_config.format {fmt} is not supported (float-quantized)")
    if config.get("kv_cache_scheme"):
        raise ModelInvalid("quantization_config.kv_cache_scheme is not supported (a bf16 KV cache)")
    groups = config.get("config_groups") or {}
    if len(groups) != 1:
        raise ModelInvalid(
            f"quantization_config.config_groups has {len(groups)} groups "
            "(one FP8 group is supported)"
        )
    ((name, group),) = groups.items()
    where = f"quantization_config.config_groups.{name}"
    weights = group.get("weights") or {}
    if (weights.get("type"), weights.get("num_bits")) != ("float", 8):
        raise ModelInvalid(
            f"{where}.weights: {weights.get('type')} {weights.get('num_bits')}-bit is not "
            "supported (float 8-bit)"
        )
    if weights.get("dynamic") or not weights.get("symmetric", True):
        raise ModelInvalid(f"{where}.weights: only static symmetric weight scales are supported")
    activations = group.get("input_activations")
    if not activations or not activations.get("dynamic"):
        raise ModelInvalid(
            f"{where}.input_activations: "
            f"{'static scales' if activations else 'none (weight-only FP8)'} "
            "are not supported (dynamic FP8 activations)"
        )
    if group.get("output_activations"):
        raise ModelInvalid(f"{where}.output_activations are not supported")
    strategy = weights.get("strategy")
    if strategy in ("channel", "tensor"):
        return Fp8Checkpoint("weight_scale", strategy, None)
    if strategy == "block":
        return Fp8Checkpoint(
            "weight_scale", "block", _block(weights.get("block_structure"), f"{where}.weights")
        )
    raise ModelInvalid(
        f"{where}.weights.strategy {strategy} is not supported (channel, tensor, block)"
    )


def _block(value: object, where: str) -> tuple[int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise ModelInvalid(f"{where} must be [rows, columns], got {value!r}")
    bn, bk = value
    if not (bk in (32, 64) or bk % 128 == 0):
        raise ModelInvalid(f"{where} {value}: block columns must be 32, 64 or a multiple of 128")
    return bn, bk
