"""Which implementation a kernel call runs: the torch reference or the Triton kernel."""

import torch
import triton

from .checks import KernelArgumentError

BACKENDS = ("auto", "torch", "triton")


def use_triton(backend: str, device: torch.device) -> bool:
    """ "auto" is Triton on CUDA and the torch reference elsewhere."""
    if backend not in BACKENDS:
        raise KernelArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return device.type == "cuda"
    return backend == "triton"


def is_interpreted(kernel: object) -> bool:
    # triton.jit returns an InterpretedFunction when TRITON_INTERPRET=1 was set at decoration time.
    return type(kernel).__name__ == "InterpretedFunction"


def require_runnable(kernel: object, device: torch.device) -> None:
    """Triton compiles for GPUs only; on CPU tensors it runs only in interpreter mode."""
    if device.type == "cpu" and not is_interpreted(kernel):
        raise KernelArgumentError(
            "Triton kernels on CPU tensors need TRITON_INTERPRET=1 set before triton is imported"
            f" (triton {triton.__version__}); use backend='torch' on CPU"
        )


def dot_in_fp32(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether tl.dot operands are cast to fp32 (exact "ieee" products).

    fp32 models want fp32 products, not tf32. Triton 3.6's interpreter computes bf16
    tl.dot wrongly (numpy has no bf16), so interpreted bf16 dots also go through fp32;
    on the GPU bf16 dots stay on the tensor cores.
    """
    return dtype == torch.float32 or (dtype == torch.bfloat16 and device.type == "cpu")
