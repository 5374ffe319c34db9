"""FP8 kernels: per-token quantization and the W8A8 GEMM (per-channel and 128x128-block
weight scales) against their torch references, on a grid of shapes as punica's tests:
Triton's interpreter on CPU, compiled on CUDA (marked `gpu`, with `torch._scaled_mm` too).
On CPU the kernels are also compiled for sm_90 (Hopper) to PTX and a cubin, so a kernel
that cannot build for the H100 fails here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede triton's first import


from lorafleet_executor.kernels import KernelArgumentError  # noqa: E402
from lorafleet_executor.kernels.backend import is_interpreted  # noqa: E402
from lorafleet_executor.kernels.fp8_gemm import (  # noqa: E402
    dequantize_weight,
    fp8_gemm_kernel,
    fp8_linear,
    fp8_matmul,
)
from lorafleet_executor.kernels.fp8_quant import (  # noqa: E402
    FP8_DTYPE,
    quantize_blocks_reference,
    quantize_rows,
    quantize_rows_reference,
)

DEVICE = "cuda" if CUDA else "cpu"
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def triton_runs_here():
    if not CUDA and not is_interpreted(fp8_gemm_kernel):
        pytest.skip("triton was imported before TRITON_INTERPRET=1 was set in this process")


def randn(*shape, seed, scale=1.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale).to(dtype).to(DEVICE)


def weight(n, k, block, seed):
    """An FP8 weight as a checkpoint holds it: per-channel or per-block scales."""
    w = randn(n, k, seed=seed, scale=k**-0.5)
    if block is None:
        q, scale = quantize_rows_reference(w)
        return q, scale
    return quantize_blocks_reference(w, block)


# e4m3 keeps 3 mantissa bits: rounding errs by at most 2^-4 relative, subnormals
# (below 2^-6 · scale) by half their spacing, 2^-10 · scale
@pytest.mark.parametrize(("rows", "width"), [(1, 16), (7, 100), (33, 5000)])
def test_quantize_rows_reference_error_is_bounded(rows, width):
    x = randn(rows, width, seed=width, scale=3.0)
    x[0, :4] = torch.tensor([0.0, 1e-8, -1e-8, 0.0])  # tiny values go subnormal or to zero
    q, scale = quantize_rows_reference(x)
    assert q.dtype == FP8_DTYPE and scale.dtype == torch.float32
    back = q.float() * scale[:, None]
    bound = x.abs() * 2**-4 + scale[:, None] * 2**-10
    assert (back - x).abs().le(bound * (1 + 1e-6)).all()
    amax = x.abs().amax(1)
    torch.testing.assert_close(scale, amax / 448, rtol=0, atol=0)
    assert q.float().abs().amax(1).eq(448).all()  # each row's largest value maps to 448


@pytest.mark.parametrize(("n", "k", "block"), [(256, 256, (128, 128)), (300, 200, (128, 128)),
                                               (70, 96, (64, 32))])  # fmt: skip
def test_block_quantization_scales_each_block_by_its_largest_value(n, k, block):
    w = randn(n, k, seed=n, scale=0.05)
    q, scale = quantize_blocks_reference(w, block)
    bn, bk = block
    assert scale.shape == (-(-n // bn), -(-k // bk))
    for i, j in [(0, 0), (scale.shape[0] - 1, scale.shape[1] - 1)]:  # a full and the last block
        part = w[i * bn : (i + 1) * bn, j * bk : (j + 1) * bk]
        assert scale[i, j] == part.abs().max() / 448
        assert q[i * bn : (i + 1) * bn, j * bk : (j + 1) * bk].float().abs().max() == 448
    back = dequantize_weight(q, scale, block)
    full = scale.repeat_interleave(bn, 0)[:n].repeat_interleave(bk, 1)[:, :k]
    assert (back - w).abs().le(w.abs() * 2**-4 + full * 2**-10 + 1e-12).all()


def test_an_all_zero_row_quantizes_to_zero():
    q, scale = quantize_rows_reference(torch.zeros(2, 8, device=DEVICE))
    assert q.float().eq(0).all() and scale.gt(0).all()


QUANT_CASES = pytest.mark.parametrize(("rows", "width"), [(1, 64), (5, 300), (17, 4100)])
QUANT_DTYPES = pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"]
)


def quantized_by_both(dtype, rows, width):
    x = randn(rows, width + 8, seed=rows, scale=2.0, dtype=dtype)[:, :width]  # strided rows
    return quantize_rows(x, backend="triton"), quantize_rows_reference(x)


@QUANT_DTYPES
@QUANT_CASES
def test_quantize_rows_kernel_scales_match_reference(dtype, rows, width):
    (_, scale), (_, ref_scale) = quantized_by_both(dtype, rows, width)
    torch.testing.assert_close(scale, ref_scale, rtol=0, atol=0)


# Triton 3.6's interpreter casts float32 to e4m3 wrongly (it truncates, and -124.3 becomes
# -64), so the quantized values are compared on the GPU only.
@gpu
@pytest.mark.gpu
@QUANT_DTYPES
@QUANT_CASES
def test_quantize_rows_kernel_values_match_reference(dtype, rows, width):
    (q, _), (ref_q, _) = quantized_by_both(dtype, rows, width)
    assert torch.equal(q.view(torch.uint8), ref_q.view(torch.uint8))


GEMM_SHAPES = [(1, 64, 64), (5, 160, 96), (33, 300, 256), (130, 128, 384)]
SCALES = [None, (128, 128), (64, 32)]
SCALE_IDS = ["channel", "block128", "block64x32"]


def close(actual, expected, dtype):
    # fp32: summation order only; bf16: the output's rounding (2^-8) on top
    tol = 1e-5 if dtype == torch.float32 else 1.6e-2
    scale = expected.float().abs().amax().clamp(min=1)
    torch.testing.assert_close(actual.float(), expected.float(), atol=tol * scale, rtol=tol)


@pytest.mark.parametrize("block", SCALES, ids=SCALE_IDS)
@pytest.mark.parametrize(("m", "n", "k"), GEMM_SHAPES)
def test_triton_gemm_matches_reference(m, n, k, block):
    dtype = torch.bfloat16 if CUDA else torch.float32
    x_q, x_scale = quantize_rows_reference(randn(m, k, seed=m + k))
    w_q, w_scale = weight(n, k, block, seed=n)
    args = (x_q, x_scale, w_q, w_scale, block, dtype)
    out = fp8_matmul(*args, backend="triton")
    assert out.dtype == dtype and out.shape == (m, n)
    close(out, fp8_matmul(*args, backend="torch"), dtype)


def test_reference_is_the_dequantized_product():
    """The CPU path is quantize-dequantize of x and of W, then an ordinary matmul."""
    x = randn(9, 96, seed=1)
    w = randn(40, 96, seed=2, scale=0.1)
    w_q, w_scale = quantize_rows_reference(w)
    x_q, x_scale = quantize_rows_reference(x)
    expected = (x_q.float() * x_scale[:, None]) @ (w_q.float() * w_scale[:, None]).T
    torch.testing.assert_close(fp8_linear(x, w_q, w_scale, None, backend="torch"), expected)
    # and FP8's error against the unquantized product is a few percent of its scale
    exact = x @ w.T
    assert (expected - exact).abs().max() < 0.05 * exact.abs().max()


def test_bad_arguments_are_refused_before_any_launch():
    x = randn(4, 64, seed=0)
    w_q, w_scale = weight(32, 64, None, seed=0)
    with pytest.raises(KernelArgumentError, match="x has 63 columns"):
        fp8_linear(x[:, :63], w_q, w_scale, None, backend="triton")
    with pytest.raises(KernelArgumentError, match="per-channel w_scale must be"):
        fp8_linear(x, w_q, w_scale[:-1], None, backend="triton")
    with pytest.raises(KernelArgumentError, match="block w_scale must be"):
        fp8_linear(x, w_q, w_scale[:, None], (128, 128), backend="triton")
    with pytest.raises(KernelArgumentError, match="block K size must be"):
        fp8_linear(x, w_q, torch.ones(1, 1, device=DEVICE), (128, 96), backend="triton")
    with pytest.raises(KernelArgumentError, match="w_q must be 2-D"):
        fp8_linear(x, w_q.float(), w_scale, None, backend="triton")
    with pytest.raises(KernelArgumentError, match="fp8 backend must be one of"):
        fp8_linear(x, w_q, w_scale, None, backend="cublas")
    with pytest.raises(KernelArgumentError, match="scaled_mm takes per-channel scales only"):
        w_b, s_b = weight(32, 64, (128, 128), seed=0)
        fp8_linear(x, w_b, s_b, (128, 128), backend="scaled_mm")


LLAMA_SHAPES = [(64, 4096, 4096), (128, 12288, 4096), (1000, 4096, 11008)]
GPU_GEMMS = [("scaled_mm", None, shape) for shape in [*GEMM_SHAPES, *LLAMA_SHAPES]] + [
    ("triton", block, shape) for block in SCALES for shape in LLAMA_SHAPES
]


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize(("gemm", "block", "shape"), GPU_GEMMS)
def test_gpu_gemms_match_reference(gemm, block, shape):
    """End to end on the GPU: x quantized by the Triton kernel, then either GEMM."""
    m, n, k = shape
    x = randn(m, k, seed=m, dtype=torch.bfloat16)
    w_q, w_scale = weight(n, k, block, seed=n)
    out = fp8_linear(x, w_q, w_scale, block, backend=gemm)
    close(out, fp8_linear(x, w_q, w_scale, block, backend="torch"), torch.bfloat16)


@gpu
@pytest.mark.gpu
def test_fp8_gemms_replay_in_a_cuda_graph():
    x = randn(64, 512, seed=3, dtype=torch.bfloat16)
    w_q, w_scale = weight(384, 512, None, seed=4)
    b_q, b_scale = weight(384, 512, (128, 128), seed=5)
    calls = [
        lambda: fp8_linear(x, w_q, w_scale, None, backend="scaled_mm"),
        lambda: fp8_linear(x, w_q, w_scale, None, backend="triton"),
        lambda: fp8_linear(x, b_q, b_scale, (128, 128), backend="triton"),
    ]
    eager = [call() for call in calls]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = [call() for call in calls]
    x.mul_(-1)  # the replay must read the new inputs
    graph.replay()
    for got, want in zip(outs, eager, strict=True):
        torch.testing.assert_close(got, -want, rtol=0, atol=0)


# Triton in interpreter mode (as this process runs it on CPU) cannot compile, so the
# Hopper build runs in a child process without TRITON_INTERPRET.
SM90_BUILD = """
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from lorafleet_executor.kernels import fp8_gemm, fp8_quant
kernel, signature, constants = json.loads(sys.argv[1])
fn = getattr(fp8_gemm, kernel, None) or getattr(fp8_quant, kernel)
source = ASTSource(fn=fn, signature=signature | dict.fromkeys(constants, "constexpr"),
                   constexprs=constants)
compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
print(json.dumps({"ptx": compiled.asm["ptx"], "cubin_bytes": len(compiled.asm["cubin"])}))
"""


def _sm90(kernel: str, signature: dict[str, str], constants: dict[str, int]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    args = json.dumps([kernel, signature, constants])
    done = subprocess.run([sys.executable, "-c", SM90_BUILD, args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


GEMM_SIGNATURE = {
    "a_ptr": "*fp8e4nv", "a_scale_ptr": "*fp32", "b_ptr": "*fp8e4nv", "b_scale_ptr": "*fp32",
    "c_ptr": "*bf16", "M": "i32", "N": "i32", "stride_am": "i32",
    "stride_bn": "i32", "stride_cm": "i32", "stride_scale_n": "i32",
}  # fmt: skip


@pytest.mark.skipif(CUDA, reason="the GPU runs the kernels themselves")
@pytest.mark.parametrize("block", [None, (128, 128)], ids=["channel", "block128"])
@pytest.mark.parametrize(("block_m", "block_n"), [(16, 32), (128, 128)])
def test_gemm_kernel_compiles_for_sm90(block, block_m, block_n):
    """The Hopper build: FP8 operands reach the warpgroup MMA (wgmma) at 64+ rows."""
    bn, bk = block or (0, 0)
    built = _sm90("fp8_gemm_kernel", GEMM_SIGNATURE, {
        "SCALE_BLOCK_N": bn, "SCALE_BLOCK_K": bk, "BLOCK_M": block_m, "BLOCK_N": block_n,
        "BLOCK_K": 128, "GROUP_M": 8, "K": 4096,
    })  # fmt: skip
    assert built["cubin_bytes"] > 0
    if block_m >= 64:
        assert "wgmma.mma_async.sync.aligned" in built["ptx"]
        assert ".e4m3.e4m3" in built["ptx"]


@pytest.mark.skipif(CUDA, reason="the GPU runs the kernels themselves")
def test_quantize_kernel_compiles_for_sm90():
    signature = {"x_ptr": "*bf16", "x_stride": "i32", "q_ptr": "*fp8e4nv", "scale_ptr": "*fp32"}
    ptx = _sm90("quantize_rows_kernel", signature, {"K": 11008, "BLOCK": 16384})["ptx"]
    assert "cvt.rn.satfinite.e4m3x2.f32" in ptx  # round to nearest even, saturating
    assert "div.rn.f32" in ptx and "div.full.f32" not in ptx  # IEEE divisions, as torch's
