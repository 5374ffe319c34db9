"""bench/gpu/tp_bench.py at --smoke shapes on CPU (gloo): it runs TP=1 and TP=2 over
the real forward pass and writes the result the GPU run will, with the communication
measured against the same steps without collectives (none at TP=1)."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "gpu" / "tp_bench.py"


def test_tp_bench_smoke_writes_throughput_scaling_and_communication(tmp_path):
    out = tmp_path / "tp.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["shape"] == "tiny" and result["device"].startswith("cpu")
    assert "git_sha" in result and result["command"].startswith("python")
    one, two = result["runs"]
    assert (one["tp"], two["tp"]) == (1, 2)
    for run in (one, two):
        assert run["adapters_in_batch"] >= 1
        for kind in ("decode", "prefill"):
            for label in ("base", "lora"):
                row = run[kind][label]
                assert row["tokens_per_s"] > 0 and row["step_ms"] > 0
                assert 0 <= row["comm_share"] < 1 and row["scaling_efficiency"] > 0
    assert one["decode"]["lora"]["comm_ms"] == 0
    assert one["decode"]["lora"]["scaling_efficiency"] == 1
    # gloo collectives on CPU cost milliseconds beside microseconds of tiny compute
    assert two["decode"]["base"]["comm_ms"] + two["decode"]["lora"]["comm_ms"] > 0
    assert "tp=2: decode" in done.stdout
