"""Triton KV write: each new token's K and V rows into their pool pages, one launch."""

import triton
import triton.language as tl

from .triton_common import next_pow2


@triton.jit
def write_kv_kernel(
    pool_ptr,
    k_ptr,
    v_ptr,
    k_stride,
    v_stride,
    k_pages_ptr,
    v_pages_ptr,
    PAGE_WIDTH: tl.constexpr,
    BLOCK: tl.constexpr,
):
    t = tl.program_id(0)
    off = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = off < PAGE_WIDTH
    k_page = tl.load(k_pages_ptr + t).to(tl.int64)
    v_page = tl.load(v_pages_ptr + t).to(tl.int64)
    k = tl.load(k_ptr + t * k_stride + off, mask=mask)
    v = tl.load(v_ptr + t * v_stride + off, mask=mask)
    tl.store(pool_ptr + k_page * PAGE_WIDTH + off, k, mask=mask)
    tl.store(pool_ptr + v_page * PAGE_WIDTH + off, v, mask=mask)


def write_kv_triton(pool, k, v, k_pages, v_pages) -> None:
    page_width = pool.shape[1]
    block = min(1024, next_pow2(page_width))
    grid = (k.shape[0], triton.cdiv(page_width, block))
    write_kv_kernel[grid](
        pool, k, v, k.stride(0), v.stride(0), k_pages, v_pages, PAGE_WIDTH=page_width, BLOCK=block
    )
