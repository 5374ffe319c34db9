"""The executor's kernels: each a Triton kernel beside a plain torch reference of it.

`backend="auto"` runs Triton on CUDA and the torch reference elsewhere; `testing`
builds pools with adapters and KV at shuffled pages for tests and benchmarks.
"""

from .attention import paged_attention, write_kv
from .checks import KernelArgumentError
from .lora import lora_expand, lora_shrink

__all__ = ["KernelArgumentError", "lora_expand", "lora_shrink", "paged_attention", "write_kv"]
