"""The LoRA kernel benchmark's code path, run on CPU with --smoke (tiny shapes, torch)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_lora_bench_smoke_runs_and_validates(tmp_path):
    out = tmp_path / "lora.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/kernels/lora_bench.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    kinds = {p["kind"] for p in report["results"]}
    assert kinds == {"decode", "prefill"}
    for point in report["results"]:
        assert point["ours_us"] > 0 and point["bmm_us"] > 0 and point["base_qkv_gemm_us"] > 0
        assert point["max_abs_diff_vs_bmm"] < 1e-4
    assert "decode" in done.stderr  # progress goes to stderr
