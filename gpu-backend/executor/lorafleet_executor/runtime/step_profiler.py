"""The torch profiler over a window of served steps: where a serving step's time goes,
including the device's idle time between steps, which profiles of steps run alone
(bench/gpu/step_profile.py) cannot show.

    python -m lorafleet_executor --socket S --profile-steps 200:50 --profile-out /tmp/serving

(the backend passes its own --profile-steps / --profile-out on) profiles steps 200..249
as the step thread launches and waits for them, then (as it launches step 250) writes
/tmp/serving.json.gz (a Chrome trace: chrome://tracing, Perfetto) and /tmp/serving.txt
(the device's busy share over the window, its longest idle gaps, and the kernel table).
"""

import gzip
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .options import ProfileWindow

# Trace event categories of work on the device (kernels, copies, memsets).
DEVICE_CATEGORIES = {"kernel", "gpu_memcpy", "gpu_memset"}
GAPS_LISTED = 10


@dataclass
class DeviceBusy:
    span_us: float  # first device event's start to the last one's end
    busy_us: float  # time covered by at least one device event
    gaps_us: list[float]  # idle stretches between device events, longest first

    @property
    def busy_share(self) -> float:
        return self.busy_us / self.span_us if self.span_us > 0 else 0.0


def device_busy(events: list[dict]) -> DeviceBusy:
    """How much of a Chrome trace's span the device worked, from its device events."""
    spans = sorted(
        (float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)))
        for e in events
        if e.get("cat") in DEVICE_CATEGORIES and e.get("ph") == "X"
    )
    if not spans:
        return DeviceBusy(0.0, 0.0, [])
    busy, gaps = 0.0, []
    start, end = spans[0]
    for s, e in spans[1:]:
        if s > end:
            busy += end - start
            gaps.append(s - end)
            start, end = s, e
        else:
            end = max(end, e)
    busy += end - start
    return DeviceBusy(end - spans[0][0], busy, sorted(gaps, reverse=True))


class StepProfiler:
    """Profiles the window's steps, counted as the step thread launches them, and writes
    the results under its `out` (a path prefix) as it launches the step after them (the
    profiler's stop waits for the device)."""

    def __init__(self, window: ProfileWindow) -> None:
        self.first, self.end, self.out = window.first, window.first + window.count, window.out
        self.launched = 0
        self._profile: Any = None  # the running torch.profiler.profile

    def before_launch(self) -> None:
        if self.launched == self.first:
            # torch on first use only: the server imports this module before its first
            # frame, which must not wait seconds for torch (server._make_executor).
            import torch
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(ProfilerActivity.CUDA)
            self._profile = profile(activities=activities)
            self._profile.__enter__()
        elif self.launched == self.end and self._profile is not None:
            self._profile.__exit__(None, None, None)
            self._write(self._profile)
            self._profile = None
        self.launched += 1

    def _write(self, prof: Any) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            trace = Path(tmp) / "trace.json"
            prof.export_chrome_trace(str(trace))
            events = json.loads(trace.read_text()).get("traceEvents", [])
            with trace.open("rb") as src, gzip.open(f"{self.out}.json.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
        busy = device_busy(events)
        steps = self.end - self.first
        gaps = ", ".join(f"{g / 1e3:.3f}" for g in busy.gaps_us[:GAPS_LISTED])
        on_device = any(a.name == "CUDA" for a in prof.activities)
        sort_by = "cuda_time_total" if on_device else "cpu_time_total"
        Path(f"{self.out}.txt").write_text(
            f"steps {self.first}..{self.end - 1} ({steps}): device busy {busy.busy_share:.1%} of"
            f" {busy.span_us / 1e3:.1f} ms ({busy.span_us / 1e3 / steps:.3f} ms per step),"
            f" idle {(busy.span_us - busy.busy_us) / 1e3:.1f} ms in {len(busy.gaps_us)} gaps;"
            f" longest (ms): {gaps}\n\n"
            + prof.key_averages().table(sort_by=sort_by, row_limit=40)
            + "\n"
        )
