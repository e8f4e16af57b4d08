"""uvloop's own test suite run against the native loop, as a third variant beside its UV and
AIO classes (opt-in: ``make test-uvloop-suite``; not part of ``make test``).

``make test-uvloop-suite`` downloads uvloop's sdist (its ``tests/`` are not in the wheel) into
a git-ignored folder and points ``UVLOOP_SUITE_DIR`` at its ``tests/``. Every test of every
class there derived from ``uvloop._testbase.UVTestCase`` becomes one pytest test run on
``monitored_ioloop.loop.Loop`` (``implementation`` stays ``'uvloop'``: the tests then expect
uvloop's behaviour, which is the goal). Ids are uvloop's own (``test_tcp.Test_UV_TCP.x``).

``expected_failures.txt`` beside this file lists what does not pass, with the same format and
rules as ``tests/cpython/expected_failures.txt``: a listed test that passes fails the run.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import unittest
from pathlib import Path
from typing import Any

import pytest

SUITE_DIR = os.environ.get("UVLOOP_SUITE_DIR")
if not SUITE_DIR:
    pytest.skip("UVLOOP_SUITE_DIR is not set: run `make test-uvloop-suite`",
                allow_module_level=True)

from monitored_ioloop.loop import Loop  # noqa: E402
from monitored_ioloop.monitored_uvloop import MonitoredUvloopEventLoopPolicy  # noqa: E402
from uvloop import _testbase as tb  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent))
from test_cpython_asyncio import (  # noqa: E402
    gist,
    problems_of,
    read_expectations,
    skip_reason_of,
)

EXPECTATIONS = Path(__file__).parent / "expected_failures.txt"
PER_TEST_TIMEOUT = 30


def _load_module(path: Path) -> Any:
    # From its file (our tests/ has a test_signals.py too), under its own name in sys.modules:
    # a process pool pickles the suite's functions by module name.
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _on_native_loop(case: type[unittest.TestCase]) -> type[unittest.TestCase]:
    """``case`` (a UV class) with our loop and policy in place of uvloop's."""
    return type(case.__name__, (case,), {
        "__module__": case.__module__,
        "new_loop": lambda self: Loop(),
        "new_policy": lambda self: MonitoredUvloopEventLoopPolicy(),
    })


def selected_tests() -> dict[str, tuple[type[unittest.TestCase], str]]:
    assert SUITE_DIR is not None
    loader = unittest.TestLoader()
    selected: dict[str, tuple[type[unittest.TestCase], str]] = {}
    for path in sorted(Path(SUITE_DIR).glob("test_*.py")):
        module = _load_module(path)
        for name, case in vars(module).items():
            if not (inspect.isclass(case) and issubclass(case, tb.UVTestCase)):
                continue
            if case.__module__ != module.__name__:
                continue  # imported from elsewhere
            ours = _on_native_loop(case)
            for method in loader.getTestCaseNames(ours):
                selected[f"{path.stem}.{name}.{method}"] = (ours, method)
    return selected


SELECTED_TESTS = selected_tests()
EXPECTATIONS_BY_ID = read_expectations(EXPECTATIONS)


def run_unittest(case: type[unittest.TestCase], method: str) -> unittest.TestResult:
    result = unittest.TestResult()
    unittest.TestSuite([case(method)]).run(result)
    return result


def _params() -> list[Any]:
    params = []
    for test_id in SELECTED_TESTS:
        expectation = EXPECTATIONS_BY_ID.get(test_id)
        marks = []
        if expectation is not None:
            marks.append(
                pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
            )
            if expectation.skip:
                marks.append(pytest.mark.skip(reason=expectation.reason))
        params.append(pytest.param(test_id, id=test_id, marks=marks))
    return params


@pytest.mark.timeout(PER_TEST_TIMEOUT)
@pytest.mark.parametrize("test_id", _params())
def test_uvloop_suite(test_id: str) -> None:
    case, method = SELECTED_TESTS[test_id]
    result = run_unittest(case, method)
    problems = problems_of(result)
    if any("from pytest-timeout" in problem for problem in problems):
        pytest.fail(f"{test_id} hung: list it as `skip` in {EXPECTATIONS.name}", pytrace=False)
    expectation = EXPECTATIONS_BY_ID.get(test_id)
    if expectation is not None:
        if problems:
            pytest.xfail(f"{expectation.reason}: {gist(problems[0])}")
        if skip_reason_of(result) is None and not expectation.flaky:
            pytest.fail(f"{test_id} passes now: remove it from {EXPECTATIONS.name}",
                        pytrace=False)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    skipped = skip_reason_of(result)
    if skipped is not None:
        pytest.skip(skipped)


def test_expectations_name_selected_tests() -> None:
    unknown = sorted(set(EXPECTATIONS_BY_ID) - set(SELECTED_TESTS))
    assert not unknown, f"{EXPECTATIONS.name} lists tests that are not selected: {unknown}"
