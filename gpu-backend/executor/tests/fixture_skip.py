"""A visible skip for tests whose fixture (built by `npm test`'s set-up) is missing."""

from pathlib import Path

import pytest


def require_fixture(path: Path) -> None:
    if not (path / ".fixture.json").exists():
        pytest.skip(f"fixture {path} is missing: run `python -m lorafleet_executor.fixtures`")
