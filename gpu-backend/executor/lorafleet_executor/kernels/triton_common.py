"""Device functions shared by the Triton kernels."""

import triton
import triton.language as tl


@triton.jit
def dot_acc(a, b, acc, DOT_F32: tl.constexpr):
    """acc + a @ b with fp32 accumulation; DOT_F32 casts the operands (see backend.dot_in_fp32)."""
    if DOT_F32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(1, n))
