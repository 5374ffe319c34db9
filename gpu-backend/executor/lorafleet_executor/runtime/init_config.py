"""The init message's choices resolved and checked: device, dtype, limits."""

import torch

from ..errors import BadMessage
from ..protocol.messages import InitConfig

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
    }
    for message, ok in checks.items():
        if not ok:
            raise BadMessage(f"init: {message}")
