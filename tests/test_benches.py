"""The instruction-count scenarios in ``benches/scenarios`` run to completion on the native
loop (a few operations each, no valgrind): they are kept working, not measured, here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

SCENARIOS = Path(__file__).resolve().parent.parent / "benches" / "scenarios"


@pytest.mark.parametrize("scenario", sorted(path.name for path in SCENARIOS.glob("*.py")), ids=str)
def test_a_scenario_completes_on_the_native_loop(scenario: str) -> None:
    if scenario == "uvicorn_hello.py" and not all(
        importlib.util.find_spec(name) for name in ("uvicorn", "httptools")
    ):
        pytest.skip("uvicorn or httptools is not installed")
    done = subprocess.run(
        [sys.executable, str(SCENARIOS / scenario), "native", "50"],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
