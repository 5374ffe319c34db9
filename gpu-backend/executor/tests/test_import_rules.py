"""scripts/check_python_imports.py: passes the executor as it is, and fails, naming the
file, the line and the rule, on a tree that crosses each rule once."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CHECK = REPO / "scripts" / "check_python_imports.py"


def run_check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), str(root)], capture_output=True, text=True, timeout=60
    )


def make_tree(root: Path, files: dict[str, str]) -> Path:
    """A package tree under root/lorafleet_executor: every folder gets an __init__.py."""
    for name, source in files.items():
        path = root / "lorafleet_executor" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in [path.parent, *path.parent.parents]:
            if folder == root:
                break
            (folder / "__init__.py").touch()
        path.write_text(source)
    return root


def test_the_executor_keeps_its_layering():
    result = run_check(REPO / "gpu-backend" / "executor")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_imports_along_the_layering_pass(tmp_path):
    make_tree(
        tmp_path,
        {
            "kernels/rope_kv.py": "import math\nimport torch\nfrom .checks import require\n",
            "model/llama.py": "from ..errors import BadMessage\nfrom ..kernels import rope_kv\n",
            "runtime/server.py": "from ..protocol.codec import encode_message\n"
            "def main():\n    from ..graphs.decode import DecodeGraphs\n",
            "__main__.py": "from .runtime.server import main\n",
        },
    )
    result = run_check(tmp_path)
    assert (result.returncode, result.stderr) == (0, "")


CROSSINGS = [
    (
        "kernels/rope_kv.py",
        "import torch\n\nfrom ..model.rope import apply_rope\n",
        3,
        "kernels/ imports lorafleet_executor.model.rope (model/): kernels import nothing of "
        "the model or the protocol",
    ),
    (
        "kernels/lora.py",
        "from .. import protocol\n",
        1,
        "kernels/ imports lorafleet_executor.protocol (protocol/)",
    ),
    (
        "kernels/backend.py",
        "import safetensors\n",
        1,
        "kernels/ imports safetensors: it may import only the standard library and numpy, "
        "torch, triton",
    ),
    (
        "protocol/codec.py",
        "import numpy as np\nimport torch\n",
        2,
        "protocol/ imports torch: it may import only the standard library and numpy",
    ),
    (
        "protocol/schema.py",
        "from lorafleet_executor.model.config import ModelConfig\n",
        1,
        "protocol/ imports lorafleet_executor.model.config (model/)",
    ),
    (
        "model/pool.py",
        "def f():\n    from ..runtime.executor import Executor\n",
        2,
        "model/ imports lorafleet_executor.runtime.executor (runtime/)",
    ),
    (
        "model/llama.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from ..protocol.messages import StepPlan\n",
        3,
        "model/ imports lorafleet_executor.protocol.messages (protocol/)",
    ),
    (
        "graphs/decode.py",
        "from ..runtime.host_cache import HostCache\n",
        1,
        "graphs/ imports lorafleet_executor.runtime.host_cache (runtime/): graphs/ may "
        "import errors, kernels, model, step",
    ),
    (
        "grammar/masks.py",
        "from ..step.sequences import SequenceState\n",
        1,
        "grammar/ imports lorafleet_executor.step.sequences (step/): grammars know nothing "
        "of the model, the step plans or the processes",
    ),
    (
        "runtime/server.py",
        "from lorafleet_reference.driver import Driver\n",
        1,
        "imports lorafleet_reference.driver: the product never imports the reference package",
    ),
]


@pytest.mark.parametrize(
    "name,source,line,message", CROSSINGS, ids=[c[0] + ":" + str(c[2]) for c in CROSSINGS]
)
def test_a_crossing_fails_naming_the_file_line_and_rule(tmp_path, name, source, line, message):
    make_tree(tmp_path, {name: source})
    result = run_check(tmp_path)
    assert result.returncode == 1
    findings = result.stderr.splitlines()
    where = f"{tmp_path / 'lorafleet_executor' / name}:{line}: "
    assert findings[0].startswith(where + message), result.stderr
    assert findings[1:] == [
        "check_python_imports: 1 finding(s) against the executor's layering "
        "(gpu-backend/executor/README.md)"
    ]


def test_a_part_without_a_rule_fails_once(tmp_path):
    make_tree(tmp_path, {"scheduler/queue.py": "import heapq\n", "scheduler/fair.py": ""})
    result = run_check(tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"{tmp_path / 'lorafleet_executor' / 'scheduler'}:0: scheduler/ has no import rule: "
        "add it to MAY_IMPORT (and the README)"
    )
    assert len(result.stderr.splitlines()) == 2
