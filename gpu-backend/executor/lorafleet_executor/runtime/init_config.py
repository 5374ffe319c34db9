"""The init message's choices resolved and checked: device, dtype, FP8, limits."""

import torch

from ..errors import BadMessage
from ..model.config import ModelConfig
from ..model.projection_reader import Fp8Plan
from ..protocol.messages import InitConfig

# The GEMM of per-channel FP8 weights on the GPU: torch._scaled_mm (cuBLASLt/CUTLASS) or
# our Triton kernel (block-scaled weights always take the Triton kernel);
# bench/gpu/roofline.py --fp8 measures both.
CUDA_FP8_GEMM = "scaled_mm"

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadMessage("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def check_init_config(config: InitConfig) -> None:
    checks = {
        "dtype must be auto, bfloat16, float16 or float32": config.dtype in ("auto", *DTYPES),
        "device must be auto, cpu or cuda": config.device in ("auto", "cpu", "cuda"),
        "num_pages must be >= 0": config.num_pages >= 0,
        "gpu_memory_utilization must lie in (0, 1]": 0 < config.gpu_memory_utilization <= 1,
        "max_lora_rank must be >= 1": config.max_lora_rank >= 1,
        "max_num_seqs must be >= 1": config.max_num_seqs >= 1,
        "max_num_batched_tokens must be >= 1": config.max_num_batched_tokens >= 1,
        "host_cache_bytes must be >= 0": config.host_cache_bytes >= 0,
        "lora_backend must be triton or torch": config.lora_backend in ("triton", "torch"),
        "quantization must be auto or fp8": config.quantization in ("auto", "fp8"),
    }
    for message, ok in checks.items():
        if not ok:
            raise BadMessage(f"init: {message}")


def resolve_fp8(
    config: InitConfig, cfg: ModelConfig, device: torch.device, dtype: torch.dtype
) -> Fp8Plan | None:
    """How the base projections are served in FP8, or None for dense: FP8 with
    `quantization fp8` or an FP8 checkpoint. On CUDA the FP8 tensor cores need compute
    capability 8.9+ (Ada, Hopper) and bf16 activations; on CPU the reference runs."""
    if config.quantization != "fp8" and cfg.fp8_checkpoint is None:
        return None
    if device.type != "cuda":
        return Fp8Plan(quantize_dense=config.quantization == "fp8", gemm="torch")
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 9):
        raise BadMessage(
            f"FP8 weights need a GPU of compute capability 8.9 or newer (Ada, Hopper); "
            f"this one is {capability[0]}.{capability[1]}"
        )
    if dtype != torch.bfloat16:
        raise BadMessage(
            f"FP8 weights need dtype bfloat16 on CUDA, got {str(dtype).removeprefix('torch.')}"
        )
    return Fp8Plan(quantize_dense=config.quantization == "fp8", gemm=CUDA_FP8_GEMM)
