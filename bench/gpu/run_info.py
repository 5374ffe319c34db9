"""What every bench/gpu result records about its run: device, versions, git sha, the
exact command (issue 7: numbers a reader can trust carry how they were made)."""

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def fixture_model() -> Path:
    """The tiny fixture model of --smoke runs (LORAFLEET_FIXTURES, else the repo's .cache)."""
    return Path(os.environ.get("LORAFLEET_FIXTURES", REPO / ".cache" / "fixtures")) / "tiny-llama"


def git_sha() -> str | None:
    """LORAFLEET_GIT_SHA where given (the device's copy of the tree may carry a stale
    .git), else the checkout's HEAD."""
    if os.environ.get("LORAFLEET_GIT_SHA"):
        return os.environ["LORAFLEET_GIT_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def device_folder(device: torch.device) -> str:
    """bench/results/<folder>: the GPU's name in lower case without NVIDIA, or cpu."""
    if device.type != "cuda":
        return "cpu"
    return torch.cuda.get_device_name(device).lower().removeprefix("nvidia ").replace(" ", "-")


def run_info(device: torch.device) -> dict:
    import triton  # noqa: PLC0415 - only to read its version

    return {
        "device": device_name(device),
        "driver": _driver() if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "python": sys.version.split()[0],
        "git_sha": git_sha(),
        "command": shlex.join(["python", *sys.argv]),
    }


def _driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.splitlines()[0].strip()
    except (OSError, subprocess.CalledProcessError, IndexError):
        return None
