"""The serving profiler's window and its device-idle arithmetic (CPU)."""

import gzip
import json

import pytest
import torch

from lorafleet_executor.runtime.options import ProfileWindow
from lorafleet_executor.runtime.step_profiler import DeviceBusy, StepProfiler, device_busy


def kernel(ts: float, dur: float, cat: str = "kernel") -> dict:
    return {"ph": "X", "cat": cat, "ts": ts, "dur": dur}


def test_device_busy_merges_overlaps_and_lists_gaps_longest_first():
    events = [
        kernel(0, 10),
        kernel(5, 10),  # overlaps the first: busy 0-15
        kernel(20, 5, "gpu_memcpy"),  # gap 5
        kernel(40, 10),  # gap 15
        {"ph": "X", "cat": "cpu_op", "ts": 100, "dur": 50},  # host work: not the device's
    ]
    busy = device_busy(events)
    assert busy == DeviceBusy(span_us=50, busy_us=30, gaps_us=[15, 5])
    assert busy.busy_share == pytest.approx(0.6)
    assert device_busy([]).busy_share == 0.0


def test_profiles_the_window_and_writes_when_the_step_after_it_launches(tmp_path):
    profiler = StepProfiler(ProfileWindow(first=1, count=2, out=tmp_path / "prof"))
    x = torch.ones(64, 64)
    for step in range(3):
        profiler.before_launch()
        x = x @ x / 64
        assert not (tmp_path / "prof.txt").exists(), f"written before step {step} launched"
    profiler.before_launch()  # step 3: the window (steps 1, 2) is over
    assert (tmp_path / "prof.txt").read_text().startswith("steps 1..2 (2): device busy")
    with gzip.open(tmp_path / "prof.json.gz") as trace:
        names = {e.get("name") for e in json.load(trace)["traceEvents"]}
    assert "aten::mm" in names
