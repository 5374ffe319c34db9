"""Argument checks shared by the kernel wrappers, run before any launch.

Shape, dtype and device checks are free and always run. Checks on the *values* of
metadata (page ids in range, ranks within the padded rank, ...) need the values on
the host: free for CPU tensors, a device sync on CUDA. So they run by default on CPU
and on CUDA only when a caller asks (`validate=True`): the executor checks a step's
plan arrays once per step (PROTOCOL.md's `page_out_of_range`), not once per layer,
and a CUDA-graph capture must not sync at all.
"""

import torch


class KernelArgumentError(ValueError):
    """A kernel was called with arguments that break its contract (shape, dtype, metadata)."""


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise KernelArgumentError(message)


def require_float(name: str, t: torch.Tensor, ndim: int) -> None:
    require(t.dtype in FLOAT_DTYPES, f"{name} must be float32/float16/bfloat16, got {t.dtype}")
    require(t.dim() == ndim, f"{name} must have {ndim} dims, got shape {tuple(t.shape)}")


def require_int32(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    require(t.dtype == torch.int32, f"{name} must be int32, got {t.dtype}")
    require(tuple(t.shape) == shape, f"{name} must have shape {shape}, got {tuple(t.shape)}")
    # The Triton kernels index metadata as flat arrays.
    require(t.is_contiguous(), f"{name} must be contiguous (a strided view would be misread)")


def require_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    first = next(iter(devices.values()))
    require(
        all(d == first for d in devices.values()),
        f"all tensors must be on one device, got {devices}",
    )


def require_row_major(name: str, t: torch.Tensor) -> None:
    require(t.stride(-1) == 1, f"{name} must have unit stride in its last dim")


def should_validate_values(validate: bool | None, device: torch.device) -> bool:
    return device.type == "cpu" if validate is None else validate


def require_in_range(name: str, t: torch.Tensor, low: int, high: int) -> None:
    """Every element of t in [low, high); one host sync for CUDA tensors."""
    if t.numel() == 0:
        return
    lo, hi = int(t.min()), int(t.max())
    require(
        low <= lo and hi < high, f"{name} values must lie in [{low}, {high}), found [{lo}, {hi}]"
    )


def require_offsets(name: str, offsets: torch.Tensor, total: int) -> None:
    """offsets[0] == 0, non-decreasing, offsets[-1] == total (a CSR-style row split)."""
    host = offsets.cpu()
    require(int(host[0]) == 0, f"{name}[0] must be 0, got {int(host[0])}")
    require(
        int(host[-1]) == total,
        f"{name}[-1] must be the number of rows {total}, got {int(host[-1])}",
    )
    require(bool((host[1:] >= host[:-1]).all()), f"{name} must be non-decreasing")
