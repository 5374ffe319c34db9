"""LoRA shrink/expand: Triton kernels vs the fp32 torch reference vs dense math (punica-style grid).

On CPU the Triton kernels run in triton's interpreter on a small grid; the full grid,
Llama shapes and CUDA-graph replay run on CUDA (marked `gpu`, skipped visibly on CPU).

Tolerances, Triton vs reference (both fp32-accumulate; prefill rounds h to the model
dtype before the expand product, as punica does):
    h:  fp32 1e-5 | fp16, bf16 1e-4 (rtol and atol: only the summation order differs)
    y:  fp32 1e-5 | fp16 atol 2e-2, rtol 1e-2 | bf16 atol 8e-2, rtol 2e-2
"""

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede triton's first import

from lorafleet_executor.kernels import KernelArgumentError, lora_expand, lora_shrink  # noqa: E402
from lorafleet_executor.kernels.backend import is_interpreted  # noqa: E402
from lorafleet_executor.kernels.lora_decode import shrink_decode_kernel  # noqa: E402
from lorafleet_executor.kernels.lora_reference import (  # noqa: E402
    lora_expand_reference,
    lora_shrink_reference,
)
from lorafleet_executor.kernels.testing import SPREADS, make_lora_batch  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
RANKS = [1, 4, 8, 16, 64, 128]
H_TOL = {torch.float32: 1e-5, torch.float16: 1e-4, torch.bfloat16: 1e-4}
Y_TOL = {  # (atol, rtol)
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-2, 1e-2),
    torch.bfloat16: (8e-2, 2e-2),
}


def triton_runs_here() -> None:
    if not CUDA and not is_interpreted(shrink_decode_kernel):
        pytest.skip(
            "triton was imported before TRITON_INTERPRET=1 was set, so its kernels cannot"
            " run on CPU in this process (run the kernel tests in their own process)"
        )


def run_both(batch, dtype):
    """(h, y) of the fp32 reference and of the Triton kernels from one starting y. The
    reference is called directly: the torch backend on CUDA decode is the bmm baseline,
    which rounds h to the model dtype (tests/test_kernels_bmm.py covers it)."""
    gen = torch.Generator().manual_seed(1)
    y0 = torch.randn(batch.x.shape[0], sum(batch.out_features), generator=gen).to(dtype)
    meta = (batch.ranks, batch.row_slot)
    h_ref = lora_shrink_reference(batch.x, batch.pool, batch.a_pages, *meta)
    y_ref = y0.to(DEVICE, copy=True)
    lora_expand_reference(y_ref, h_ref, batch.pool, batch.b_pages, *meta, batch.out_features)
    triton = {"segments": batch.segments, "lead_rows": batch.lead_rows, "backend": "triton"}
    h = lora_shrink(batch.x, batch.pool, batch.a_pages, *meta, **triton)
    y = y0.to(DEVICE, copy=True)
    lora_expand(y, h, batch.pool, batch.b_pages, *meta, batch.out_features, **triton)
    return y0, ((h_ref, y_ref), (h, y))


def check_batch(batch, dtype) -> None:
    y0, ((h_ref, y_ref), (h_tri, y_tri)) = run_both(batch, dtype)
    tol = H_TOL[dtype]
    torch.testing.assert_close(h_tri, h_ref, atol=tol, rtol=tol)
    atol, rtol = Y_TOL[dtype]
    torch.testing.assert_close(y_tri.float(), y_ref.float(), atol=atol, rtol=rtol)
    # The reference itself against dense weights (no pages): catches layout mistakes
    # that kernel and reference could share.
    expected = (y0.float() + batch.dense_delta()).to(dtype).float()
    torch.testing.assert_close(y_ref.float().cpu(), expected, atol=atol, rtol=rtol)
    untouched = batch.row_slot.cpu() < 0
    assert torch.equal(y_tri.cpu()[untouched], y0[untouched]), "rows without adapter changed"
    assert torch.all(h_tri.cpu()[:, untouched] == 0), "rows without adapter got nonzero h"


def make(num_rows, spread, dtype, prefill, **shape):
    shape = {
        "in_features": 100,
        "out_features": [96, 40, 40],
        "page_width": 48,
        **shape,
    }
    return make_lora_batch(
        num_rows=num_rows,
        slot_ranks=shape.pop("slot_ranks", RANKS),
        spread=spread,
        no_adapter_every=3,
        untargeted=[(1, 2), (2, 0)],
        prefill=prefill,
        dtype=dtype,
        device=DEVICE,
        seed=num_rows * 7 + SPREADS.index(spread),
        **shape,
    )


@pytest.mark.parametrize("prefill", [False, True], ids=["decode", "prefill"])
@pytest.mark.parametrize(
    ("num_rows", "spread"),
    [(1, "identical"), (3, "distinct"), (7, "zipf"), (7, "skewed"), (7, "distinct")],
)
def test_fp32_grid_matches_reference(num_rows, spread, prefill):
    triton_runs_here()
    check_batch(make(num_rows, spread, torch.float32, prefill), torch.float32)


@pytest.mark.parametrize("prefill", [False, True], ids=["decode", "prefill"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_dtypes_match_reference(dtype, prefill):
    triton_runs_here()
    check_batch(make(7, "zipf", dtype, prefill), dtype)


@pytest.mark.parametrize("prefill", [False, True], ids=["decode", "prefill"])
def test_single_module_wider_than_page_width(prefill):
    # One module (o_proj-like), in and out spanning several pages, W not a power of 2.
    triton_runs_here()
    batch = make_lora_batch(
        num_rows=5,
        in_features=130,
        out_features=[70],
        slot_ranks=[16, 2],
        page_width=24,
        spread="distinct",
        prefill=prefill,
        device=DEVICE,
    )
    check_batch(batch, torch.float32)


def test_no_row_has_an_adapter_leaves_y_unchanged():
    triton_runs_here()
    batch = make(3, "identical", torch.float32, False)
    batch.row_slot.fill_(-1)
    check_batch(batch, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("lead_rows", [1, 4, 9])
def test_mixed_step_decode_rows_then_segments(lead_rows, dtype):
    # A mixed step: the leading rows one per program (decode kernel), the rest in runs.
    triton_runs_here()
    batch = make(9, "zipf", dtype, True)
    batch.lead_by_rows(lead_rows)
    check_batch(batch, dtype)


def test_lead_rows_bound_may_exceed_the_rows_before_the_segments():
    # In a CUDA graph the grid covers a bound; rows from seg_starts[0] on are not redone.
    triton_runs_here()
    batch = make(9, "distinct", torch.float32, True)
    batch.lead_by_rows(3)
    batch.lead_rows = 6
    check_batch(batch, torch.float32)


def test_prefill_segments_may_split_one_slot():
    # Two sequences on one adapter are two segments; the kernel must not care.
    triton_runs_here()
    batch = make(7, "identical", torch.float32, True)
    starts = torch.tensor([0, 2, 7], dtype=torch.int32, device=DEVICE)
    batch.segments = (starts, torch.zeros(2, dtype=torch.int32, device=DEVICE))
    batch.row_slot.fill_(0)
    check_batch(batch, torch.float32)


def with_slots(batch, slots):
    batch.row_slot = torch.as_tensor(slots, dtype=torch.int32).to(DEVICE)
    return batch


# Aligned blocks of 16 rows on one adapter take the tensor-core tiles (rank 128 over many
# rank programs; slot 2 skips module 1); 16 rows without one, then a block on two adapters
# and a partial block stay one row per program.
SHARED_BLOCKS = [5] * 16 + [2] * 16 + [-1] * 16 + [0, 3] * 4 + [3] * 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_decode_blocks_on_one_adapter_match_reference(dtype):
    triton_runs_here()
    batch = make(len(SHARED_BLOCKS), "distinct", dtype, False)
    check_batch(with_slots(batch, SHARED_BLOCKS), dtype)


def test_mixed_step_block_cut_by_the_segments_is_done_row_by_row():
    # Rows 0-15 are a shared block; 16-19 share the adapter but are cut by the segments
    # (from row 20 on), so they go one per program.
    triton_runs_here()
    batch = with_slots(make(32, "identical", torch.float32, True), [1] * 32)
    batch.lead_by_rows(20)
    batch.lead_rows = 24  # the grid's bound may pass the segments' start
    check_batch(batch, torch.float32)


def shrink_args(batch):
    return [batch.x, batch.pool, batch.a_pages, batch.ranks, batch.row_slot]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a.__setitem__(3, a[3].long()), "ranks must be int32"),
        (lambda a: a.__setitem__(2, a[2][..., :1].contiguous()), "ceil"),
        (lambda a: a.__setitem__(0, a[0].half()), "share a dtype"),
        (lambda a: a.__setitem__(4, a[4][:-1]), "row_slot must have shape"),
        (lambda a: a[2].view(-1).__setitem__(0, 10**6), "a_pages values must lie in"),
        (lambda a: a[3].view(-1).__setitem__(0, 129), "ranks values must lie in"),
        (lambda a: a[4].__setitem__(0, 6), "row_slot values must lie in"),
    ],
    ids=["ranks-dtype", "pages-per-row", "x-dtype", "row-slot-shape", "page", "rank", "slot"],
)
def test_shrink_rejects_bad_arguments(mutate, message):
    args = shrink_args(make(4, "zipf", torch.float32, False, slot_ranks=RANKS))
    args = [a.cpu().clone() for a in args]
    mutate(args)
    with pytest.raises(KernelArgumentError, match=message):
        lora_shrink(*args, backend="torch")


def test_lead_rows_are_checked_against_the_segments():
    batch = make(9, "zipf", torch.float32, True)
    args = shrink_args(batch)
    with pytest.raises(KernelArgumentError, match="lead_rows needs segments"):
        lora_shrink(*args, lead_rows=2, backend="torch")
    batch.lead_by_rows(4)
    with pytest.raises(KernelArgumentError, match="rows before the segments must be at most"):
        lora_shrink(*args, segments=batch.segments, lead_rows=3, backend="torch", validate=True)
    with pytest.raises(KernelArgumentError, match="lead_rows must lie in"):
        lora_shrink(*args, segments=batch.segments, lead_rows=10, backend="torch")


def test_expand_rejects_bad_arguments():
    batch = make(4, "zipf", torch.float32, True)
    h = lora_shrink(*shrink_args(batch), segments=batch.segments, backend="torch")
    y = torch.zeros(4, 176, device=DEVICE)
    common = (batch.pool, batch.b_pages, batch.ranks, batch.row_slot)
    with pytest.raises(KernelArgumentError, match="out_features sum"):
        lora_expand(y, h, *common, [96, 40, 39], backend="torch")
    with pytest.raises(KernelArgumentError, match="h must be float32"):
        lora_expand(y, h.half(), *common, batch.out_features, backend="torch")
    with pytest.raises(KernelArgumentError, match="backend must be one of"):
        lora_expand(y, h, *common, batch.out_features, backend="cuda")
    starts, seg_slot = batch.segments
    wrong = (starts, (seg_slot + 1) % 6)
    with pytest.raises(KernelArgumentError, match="segments disagree"):
        lora_expand(y, h, *common, batch.out_features, segments=wrong, validate=True)


# --- CUDA: the full grid, Llama shapes, CUDA graphs -------------------------------------

GPU_SHAPES = {
    "small": {"in_features": 100, "out_features": [96, 40, 40], "page_width": 48},
    "llama-gqa": {"in_features": 2048, "out_features": [2048, 512, 512], "page_width": 512},
    "llama7b": {"in_features": 4096, "out_features": [4096, 4096, 4096], "page_width": 4096},
}


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("shape", list(GPU_SHAPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("spread", SPREADS)
@pytest.mark.parametrize("num_rows", [1, 3, 7, 33, 133])
@pytest.mark.parametrize("prefill", [False, True, "mixed"], ids=["decode", "prefill", "mixed"])
def test_gpu_full_grid(num_rows, spread, dtype, shape, prefill):
    batch = make(num_rows, spread, dtype, bool(prefill), **GPU_SHAPES[shape])
    if prefill == "mixed":
        batch.lead_by_rows(num_rows // 2)
    check_batch(batch, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("shape", list(GPU_SHAPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mixed", [False, True], ids=["decode", "mixed"])
def test_gpu_sorted_rows_share_blocks(mixed, dtype, shape):
    # Rows sorted by adapter: long runs, most of them in aligned blocks on one adapter.
    batch = make(133, "zipf", dtype, False, **GPU_SHAPES[shape])
    with_slots(batch, batch.row_slot.sort().values)
    if mixed:
        batch.lead_by_rows(70)
    check_batch(batch, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_cuda_graph_replay_matches_eager_exactly():
    batch = make(33, "zipf", torch.bfloat16, False, **GPU_SHAPES["llama-gqa"])
    y0 = torch.randn(33, sum(batch.out_features), device=DEVICE).to(torch.bfloat16)

    def step(y):
        h = lora_shrink(*shrink_args(batch))
        lora_expand(y, h, batch.pool, batch.b_pages, batch.ranks, batch.row_slot,
                    batch.out_features)  # fmt: skip

    eager = y0.clone()
    step(eager)
    static = y0.clone()
    step(static.clone())  # compile outside the capture
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step(static)
    static.copy_(y0)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static, eager)
    # Replayed on sorted slots, the captured kernels take the shared blocks as eager does.
    batch.row_slot.copy_(batch.row_slot.sort().values)
    eager = y0.clone()
    step(eager)
    static.copy_(y0)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static, eager)
