"""The instruction-count scenarios of ``benches/instructions.py`` run to completion on the
native loop (a few operations each, no valgrind): they are kept working, not measured, here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import List

import pytest

pytestmark = pytest.mark.timeout(60)

RUNNER = Path(__file__).resolve().parent.parent / "benches" / "instructions.py"


def runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_instructions", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scenarios() -> List[str]:
    # Not in an sdist: nothing to check there.
    return list(runner().SCENARIOS) if RUNNER.exists() else []


@pytest.mark.parametrize("scenario", scenarios())
def test_a_scenario_completes_on_the_native_loop(scenario: str) -> None:
    needs = {
        "uvicorn_hello": ("uvicorn", "httptools"),
        "fastapi_json": ("uvicorn", "httptools", "fastapi"),
    }
    missing = [name for name in needs.get(scenario, ()) if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    template, _ = runner().SCENARIOS[scenario]
    done = subprocess.run(
        [sys.executable, *(part.format(loop="native") for part in template), "50"],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
