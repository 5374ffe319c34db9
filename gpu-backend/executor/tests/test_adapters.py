"""PEFT adapter parsing: accepted forms, and every bad adapter refused by name while the
pool and the host cache stay exactly as they were."""

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from fixture_skip import require_fixture
from safetensors.torch import load_file, save_file

from lorafleet_executor.errors import AdapterInvalid, CapacityExceeded
from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.model.adapter_layout import adapter_layout
from lorafleet_executor.model.adapters import parse_adapter
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_executor.runtime.host_cache import HostCache

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"
ADAPTERS = ROOT / "adapters"
Q_A = "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"
DOWN_B = "base_model.model.model.layers.2.mlp.down_proj.lora_B.weight"


@pytest.fixture(scope="module")
def executor():
    require_fixture(TINY)
    return Executor(InitConfig(model_path=str(TINY), num_pages=2000, max_lora_rank=64))


def manifest_entry(name: str) -> dict:
    return json.loads((ADAPTERS / name / ".fixture.json").read_text())


@pytest.mark.parametrize(
    "name", ["tiny-r4", "tiny-r8", "tiny-r64", "tiny-r16-rslora", "tiny-mix-13"]
)
def test_staged_metadata_matches_the_fixture(executor, name):
    entry = manifest_entry(name)
    staged = executor.stage_adapter(1000, str(ADAPTERS / name))
    assert staged.rank == entry["rank"]
    assert staged.scale == pytest.approx(entry["scale"])
    assert staged.targets == [t.removesuffix("_proj") for t in entry["targets"]]
    _, pages = adapter_layout(
        staged.rank, staged.targets, executor.cfg.module_shapes(), executor.cfg.page_width
    )
    assert staged.num_pages == pages
    assert staged.host_bytes == executor.cfg.num_layers * pages * executor.cfg.page_width * 4


def test_packed_rows_are_a_and_scaled_b_transposed(executor):
    executor.stage_adapter(1001, str(ADAPTERS / "tiny-r16-rslora"))
    adapter = executor.host.get(1001)
    raw = load_file(str(ADAPTERS / "tiny-r16-rslora" / "adapter_model.safetensors"))
    w = executor.cfg.page_width
    span = adapter.spans["k"]
    rows = adapter.rows[1].reshape(-1)  # layer 1, page list flattened
    a = rows[span.a_start * w : span.b_start * w].view(16, span.a_row_pages * w)
    bt = rows[span.b_start * w : (span.b_start + 16 * span.b_row_pages) * w].view(16, -1)
    prefix = "base_model.model.model.layers.1.self_attn.k_proj"
    torch.testing.assert_close(a[:, :64], raw[f"{prefix}.lora_A.weight"])
    assert bool((a[:, 64:] == 0).all())
    scale = 16 / math.sqrt(16)
    torch.testing.assert_close(bt[:, :32], raw[f"{prefix}.lora_B.weight"].t() * scale)


@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_every_layer_and_module_packs_like_a_per_row_copy(executor, tmp_path, stored, dtype):
    # All seven modules, rsLoRA (a scale that is no power of two).
    source = ADAPTERS / "tiny-mix-06"
    shutil.copytree(source, tmp_path / "a")
    raw = {k: v.to(stored) for k, v in load_file(str(source / "adapter_model.safetensors")).items()}
    save_file(raw, str(tmp_path / "a" / "adapter_model.safetensors"))
    cfg = executor.cfg
    adapter = parse_adapter(7, tmp_path / "a", cfg, 64, dtype)
    w = cfg.page_width
    for layer in range(cfg.num_layers):
        rows = adapter.rows[layer].reshape(-1)
        for module, span in adapter.spans.items():
            parent = "mlp" if module in ("gate", "up", "down") else "self_attn"
            prefix = f"base_model.model.model.layers.{layer}.{parent}.{module}_proj"
            a, b = raw[f"{prefix}.lora_A.weight"], raw[f"{prefix}.lora_B.weight"]
            got_a = rows[span.a_start * w : span.b_start * w].view(span.rank, -1)
            got_b = rows[span.b_start * w : (span.b_start + span.rank * span.b_row_pages) * w]
            got_b = got_b.view(span.rank, -1)
            assert torch.equal(got_a[:, : a.shape[1]], a.to(dtype))
            expected_b = (b.float().t() * adapter.scale).to(dtype)
            torch.testing.assert_close(got_b[:, : b.shape[0]], expected_b, rtol=0, atol=0)
            assert bool((got_a[:, a.shape[1] :] == 0).all())
            assert bool((got_b[:, b.shape[0] :] == 0).all())


def test_all_linear_targets_every_projection(executor, tmp_path):
    path = copy_adapter(tmp_path / "spec", "tiny-r8")
    edit_config(path, target_modules="all-linear")
    assert executor.stage_adapter(1002, str(path)).targets == [
        "q",
        "k",
        "v",
        "o",
        "gate",
        "up",
        "down",
    ]


def copy_adapter(dest, name="tiny-r8"):
    shutil.copytree(ADAPTERS / name, dest)
    return dest


def edit_config(path, **changes):
    config = json.loads((path / "adapter_config.json").read_text())
    config.update(changes)
    (path / "adapter_config.json").write_text(json.dumps(config))


def edit_tensors(path, change):
    file = path / "adapter_model.safetensors"
    tensors = load_file(str(file))
    change(tensors)
    save_file(tensors, str(file))


def _set(key, value):
    def change(t):
        t[key] = value(t[key]) if callable(value) else value

    return change


def _poison(value):
    return lambda t: t.index_fill(0, torch.tensor([1]), value)


def _without(key):
    return lambda t: t.pop(key)


BAD = {
    "missing config": (
        lambda p: (p / "adapter_config.json").unlink(),
        "adapter_config.json is missing",
    ),
    "config not json": (
        lambda p: (p / "adapter_config.json").write_text("{r: 8"),
        "not valid JSON",
    ),
    "not lora": (lambda p: edit_config(p, peft_type="IA3"), 'peft_type must be "LORA"'),
    "dora": (lambda p: edit_config(p, use_dora=True), "use_dora"),
    "bias training": (lambda p: edit_config(p, bias="all"), "bias"),
    "modules_to_save": (lambda p: edit_config(p, modules_to_save=["lm_head"]), "modules_to_save"),
    "rank pattern": (lambda p: edit_config(p, rank_pattern={"q_proj": 4}), "rank_pattern"),
    "rank over max": (lambda p: edit_config(p, r=65), "r must be at most 64"),
    "rank not int": (lambda p: edit_config(p, r="8"), "whole number"),
    "alpha not number": (lambda p: edit_config(p, lora_alpha=None), "lora_alpha"),
    "rslora not bool": (lambda p: edit_config(p, use_rslora="yes"), "use_rslora"),
    "unknown target": (
        lambda p: edit_config(p, target_modules=["q_proj", "lm_head"]),
        "target module lm_head is not one of",
    ),
    "regex target": (
        lambda p: edit_config(p, target_modules=r".*(embed_tokens|q_proj)"),
        "regular expressions are not supported",
    ),
    "pickle only": (
        lambda p: (p / "adapter_model.safetensors").rename(p / "adapter_model.bin"),
        "pickle",
    ),
    "weights missing": (lambda p: (p / "adapter_model.safetensors").unlink(), "is missing"),
    "not safetensors": (
        lambda p: (p / "adapter_model.safetensors").write_bytes(b"\x10\x00garbage"),
        r"-byte header \(at most 8388608\)",
    ),
    "tensor missing": (
        lambda p: edit_tensors(p, _without(DOWN_B)),
        "no lora_B weight for layer 2 down_proj",
    ),
    "other base shape": (
        lambda p: edit_tensors(p, _set(Q_A, torch.zeros(8, 96))),
        r"layers.1.self_attn.q_proj.lora_A.weight has shape \[8, 96\], expected \[8, 64\]",
    ),
    "rank mismatch": (
        lambda p: edit_tensors(p, _set(DOWN_B, torch.zeros(64, 4))),
        "lora_B.weight has shape",
    ),
    "integer dtype": (
        lambda p: edit_tensors(p, _set(Q_A, lambda t: t.to(torch.int32))),
        "is I32; use F32, F16 or BF16",
    ),
    "nan": (lambda p: edit_tensors(p, _set(Q_A, _poison(float("nan")))), "not finite"),
    "inf": (lambda p: edit_tensors(p, _set(DOWN_B, _poison(float("inf")))), "not finite"),
    "extra tensor": (
        lambda p: edit_tensors(
            p, _set("base_model.model.lm_head.lora_A.weight", torch.zeros(8, 64))
        ),
        "tensor base_model.model.lm_head.lora_A.weight is not a LoRA A or B weight",
    ),
    "layer beyond base": (
        lambda p: edit_tensors(p, _set(Q_A.replace("layers.1", "layers.7"), torch.zeros(8, 64))),
        "is for a layer beyond the base model's 3",
    ),
    "untargeted module": (
        lambda p: edit_config(p, target_modules=["q_proj", "k_proj"]),
        "which target_modules does not list",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_adapter_is_refused_by_name_and_changes_nothing(executor, tmp_path, case):
    breaker, message = BAD[case]
    good = executor.stage_adapter(7, str(ADAPTERS / "tiny-r4"))
    executor.load_adapter(7, np.arange(good.num_pages, dtype=np.int32))
    pool_before = executor.pool.data.clone()
    host_before = (len(executor.host), executor.host.used_bytes, 7 in executor.host)
    placed_before = dict(executor.placed)

    path = copy_adapter(tmp_path / case.replace(" ", "_"))
    breaker(path)
    with pytest.raises(AdapterInvalid, match=message):
        executor.stage_adapter(8, str(path))

    assert torch.equal(executor.pool.data, pool_before)
    assert (len(executor.host), executor.host.used_bytes, 7 in executor.host) == host_before
    assert 8 not in executor.host
    assert executor.placed == placed_before


def test_not_a_directory(executor, tmp_path):
    with pytest.raises(AdapterInvalid, match="not a directory"):
        executor.stage_adapter(9, str(tmp_path / "nowhere"))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_weights_beyond_fp16_once_scaled_are_refused_in_any_pool_dtype(tmp_path, dtype):
    require_fixture(TINY)
    ex = Executor(InitConfig(model_path=str(TINY), num_pages=500, dtype=dtype))
    path = copy_adapter(tmp_path / "big")
    edit_tensors(path, _set(DOWN_B, lambda t: t * 0 + 60000.0))  # x scale 2 > fp16 max
    with pytest.raises(AdapterInvalid, match="layer 2 down_proj lora_B holds values beyond 65504"):
        ex.stage_adapter(1, str(path))


def test_host_cache_refuses_what_does_not_fit_and_never_evicts(executor):
    one = executor.stage_adapter(20, str(ADAPTERS / "tiny-r4")).host_bytes
    left = []
    cache = HostCache(capacity_bytes=3 * one, on_leave=lambda a: left.append(a.adapter_id))
    parsed = executor.host.get(20)
    copies = [type(parsed)(**{**vars(parsed), "adapter_id": i}) for i in range(4)]
    for adapter in copies[:3]:
        cache.put(adapter)
    # The engine owns the tier: a fourth is refused, and the three it counts on stay.
    with pytest.raises(CapacityExceeded, match="has 0 of"):
        cache.put(copies[3])
    assert [i in cache for i in range(4)] == [True, True, True, False]
    assert cache.used_bytes == 3 * one
    cache.put(copies[1])  # putting it again takes no more room, and it stays
    assert left == []
    replacement = type(parsed)(**{**vars(parsed), "adapter_id": 2})
    cache.put(replacement)  # replacing one hands the old one out (its buffer is free again)
    assert left == [2] and cache.get(2) is replacement
    cache.drop(1)
    assert left == [2, 1]
    cache.put(copies[3])  # the engine made room first
    assert [i in cache for i in range(4)] == [True, False, True, True]
    assert cache.used_bytes == 3 * one
    tiny = HostCache(capacity_bytes=one - 1, on_leave=lambda a: left.append(a.adapter_id))
    with pytest.raises(CapacityExceeded):
        tiny.put(copies[0])
    assert len(tiny) == 0 and tiny.used_bytes == 0


def test_ready_names_the_host_tier_and_the_largest_adapter_it_takes(executor):
    info = executor.ready_info()
    assert info["host_cache_bytes"] == executor.config.host_cache_bytes
    # tiny-r64 is rank 64 on all seven modules: the largest adapter max_rank 64 allows.
    assert executor.config.max_lora_rank == 64
    staged = executor.stage_adapter(21, str(ADAPTERS / "tiny-r64"))
    assert staged.host_bytes == info["max_adapter_host_bytes"]
