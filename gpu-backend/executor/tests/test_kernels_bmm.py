"""Gather-and-bmm LoRA (S-LoRA's "bmm" baseline, the torch path of CUDA decode) vs the
fp32 per-slot reference, on CPU, over mixed ranks, rows without adapters, untargeted
modules and in/out not a multiple of W. fp32: only the summation order differs (1e-5)."""

import pytest
import torch

from lorafleet_executor.kernels import lora_bmm, lora_expand, lora_shrink
from lorafleet_executor.kernels.lora_bmm import (
    lora_expand_bmm,
    lora_expand_bmm_segments,
    lora_shrink_bmm,
    lora_shrink_bmm_segments,
)
from lorafleet_executor.kernels.lora_reference import (
    lora_expand_reference,
    lora_shrink_reference,
)
from lorafleet_executor.kernels.testing import make_lora_batch


def small_batch(num_rows, slot_ranks, spread, no_adapter_every, untargeted, prefill):
    """In and out not a multiple of the page width W = 32."""
    return make_lora_batch(
        num_rows=num_rows,
        in_features=72,
        out_features=[72, 40, 40],
        slot_ranks=slot_ranks,
        page_width=32,
        spread=spread,
        no_adapter_every=no_adapter_every,
        untargeted=untargeted,
        prefill=prefill,
        seed=num_rows,
    )


@pytest.mark.parametrize(
    ("num_rows", "slot_ranks", "spread", "no_adapter_every", "untargeted"),
    [
        (1, [8], "identical", 0, ()),
        (7, [1, 4, 16, 64], "distinct", 3, ()),
        (33, [4, 128, 8], "zipf", 5, ((1, 0), (2, 2))),
        (13, [16, 16], "skewed", 2, ((0, 1),)),
    ],
)
def test_bmm_matches_reference(num_rows, slot_ranks, spread, no_adapter_every, untargeted):
    batch = small_batch(num_rows, slot_ranks, spread, no_adapter_every, untargeted, prefill=False)
    args = (batch.pool, batch.a_pages, batch.ranks, batch.row_slot)
    h = lora_shrink_bmm(batch.x, *args)
    h_ref = lora_shrink_reference(batch.x, *args)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)

    y0 = torch.randn(num_rows, sum(batch.out_features), generator=torch.Generator().manual_seed(2))
    y, y_ref = y0.clone(), y0.clone()
    expand_args = (batch.pool, batch.b_pages, batch.ranks, batch.row_slot, batch.out_features)
    lora_expand_bmm(y, h, *expand_args)
    lora_expand_reference(y_ref, h_ref, *expand_args)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y - y0, batch.dense_delta(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("host_lengths", [True, False], ids=["bucketed", "padded-to-T"])
@pytest.mark.parametrize("group_bytes", [lora_bmm.SEGMENT_BYTES, 1], ids=["one-group", "per-run"])
@pytest.mark.parametrize(
    ("num_rows", "slot_ranks", "spread", "no_adapter_every"),
    [(1, [8], "identical", 0), (29, [1, 4, 16, 64], "zipf", 3), (40, [4, 128, 8], "distinct", 5)],
)
def test_bmm_segments_match_reference(
    num_rows, slot_ranks, spread, no_adapter_every, group_bytes, host_lengths, monkeypatch
):
    """Prefill runs: padded in buckets of similar length (or all to T without the host's
    run lengths), in one group of runs or one run per group."""
    monkeypatch.setattr(lora_bmm, "SEGMENT_BYTES", group_bytes)
    batch = small_batch(num_rows, slot_ranks, spread, no_adapter_every, ((1, 0),), prefill=True)
    lengths = batch.segments[0].diff().numpy() if host_lengths else None
    args = (batch.pool, batch.a_pages, batch.ranks)
    h = lora_shrink_bmm_segments(batch.x, *args, batch.segments, lengths)
    h_ref = lora_shrink_reference(batch.x, *args, batch.row_slot)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    y0 = torch.randn(num_rows, 152, generator=torch.Generator().manual_seed(2))
    y, y_ref = y0.clone(), y0.clone()
    lora_expand_bmm_segments(y, h, batch.pool, batch.b_pages, batch.ranks, batch.segments,
                             lengths, batch.out_features)  # fmt: skip
    lora_expand_reference(y_ref, h_ref, batch.pool, batch.b_pages, batch.ranks, batch.row_slot,
                          batch.out_features)  # fmt: skip
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("lead_rows", [0, 5, 12])
def test_gpu_mixed_step_bmm_matches_reference(lead_rows):
    """The torch backend on CUDA (the bmm baseline) with decode rows before segments."""
    batch = make_lora_batch(
        num_rows=33, in_features=72, out_features=[72, 40, 40], slot_ranks=[4, 16, 64],
        page_width=32, spread="zipf", no_adapter_every=4, untargeted=((1, 0),),
        prefill=True, device="cuda", seed=5,
    )  # fmt: skip
    batch.lead_by_rows(lead_rows)
    meta = (batch.ranks, batch.row_slot)
    kw = {"segments": batch.segments, "lead_rows": batch.lead_rows, "backend": "torch"}
    # lengths as the host knows them; a bound of lead rows past seg_starts[0] as graphs do
    kw["run_lengths"] = batch.segments[0].diff().cpu().numpy()
    kw["lead_rows"] = min(33, lead_rows + 3)
    h = lora_shrink(batch.x, batch.pool, batch.a_pages, *meta, **kw)
    h_ref = lora_shrink_reference(batch.x, batch.pool, batch.a_pages, *meta)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    y0 = torch.randn(33, 152, device="cuda")
    y, y_ref = y0.clone(), y0.clone()
    lora_expand(y, h, batch.pool, batch.b_pages, *meta, batch.out_features, **kw)
    lora_expand_reference(y_ref, h_ref, batch.pool, batch.b_pages, *meta, batch.out_features)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float16, 2e-2), (torch.bfloat16, 8e-2)])
def test_gpu_half_bmm_matches_reference(dtype, atol):
    """On CUDA in the model dtype, as the bmm variant serves: h is rounded to the dtype."""
    batch = make_lora_batch(
        num_rows=33,
        in_features=4096,
        out_features=[4096, 4096, 4096],
        slot_ranks=[8, 16, 32, 64],
        page_width=4096,
        spread="zipf",
        no_adapter_every=5,
        untargeted=((1, 0),),
        dtype=dtype,
        device="cuda",
        seed=3,
    )
    args = (batch.pool, batch.a_pages, batch.ranks, batch.row_slot)
    h = lora_shrink_bmm(batch.x, *args)
    h_ref = lora_shrink_reference(batch.x, *args)
    torch.testing.assert_close(h, h_ref, atol=atol, rtol=1e-2)
    y0 = torch.randn(33, 3 * 4096, device="cuda").to(dtype)
    y, y_ref = y0.clone(), y0.clone()
    expand_args = (batch.pool, batch.b_pages, batch.ranks, batch.row_slot, batch.out_features)
    lora_expand_bmm(y, h, *expand_args)
    lora_expand_reference(y_ref, h_ref, *expand_args)
    torch.testing.assert_close(y.float(), y_ref.float(), atol=atol, rtol=2e-2)
