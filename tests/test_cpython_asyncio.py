"""CPython's own asyncio test suite (``test.test_asyncio``) run against the native loop.

Every unittest test of the selected classes becomes one pytest test, run in-process under a
``MonitoredUvloopEventLoopPolicy`` so that ``asyncio.new_event_loop()``, ``asyncio.run()`` and
``IsolatedAsyncioTestCase`` get our loop. Classes that build their loop themselves are subclassed
below to build ours instead. Classes that only drive CPython's fake-clock ``TestLoop`` or a mocked
``BaseEventLoop`` are left out: they would not exercise our loop.

``tests/cpython/expected_failures.txt`` names what does not pass yet, each with its reason. A
listed test that fails is reported as xfail; a listed test that passes fails, so the list only
ever shrinks. Tests marked ``skip`` there hang or disturb the tests after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

pytest.importorskip("test.test_asyncio", reason="CPython's test package is not installed")
if sys.version_info < (3, 11):
    # The selection and tests/cpython/expected_failures.txt were recorded against CPython
    # 3.11's suite (and hold for 3.12 and 3.13); 3.9 and 3.10 lack some of these modules.
    pytest.skip("the selection needs CPython 3.11+'s test suite", allow_module_level=True)

from monitored_ioloop.loop import Loop  # noqa: E402
from monitored_ioloop.monitored_uvloop import MonitoredUvloopEventLoopPolicy  # noqa: E402
from test.test_asyncio import (  # noqa: E402
    test_base_events,
    test_buffered_proto,
    test_context,
    test_events,
    test_futures2,
    test_locks,
    test_pep492,
    test_queues,
    test_runners,
    test_sendfile,
    test_server,
    test_sock_lowlevel,
    test_ssl,
    test_sslproto,
    test_streams,
    test_subprocess,
    test_taskgroups,
    test_tasks,
    test_threads,
    test_timeouts,
    test_unix_events,
    test_waitfor,
)
from test.test_asyncio import utils as test_utils  # noqa: E402

EXPECTATIONS = Path(__file__).parent / "cpython" / "expected_failures.txt"
PER_TEST_TIMEOUT = 20


# -- classes that build their own loop, made to build ours -------------------------------------
# ``__test__ = False`` keeps pytest from collecting them as unittest classes of their own.


class EventLoopTests(
    test_events.UnixEventLoopTestsMixin, test_events.SubprocessTestsMixin, test_utils.TestCase
):
    """The loop conformance tests CPython runs against each of its selector loops."""

    __test__ = False

    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        return Loop()


# Network I/O, pipes and subprocesses (issue 4).


class SockTests(test_sock_lowlevel.BaseSockTestsMixin, test_utils.TestCase):
    __test__ = False

    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        return Loop()


class SendfileTests(test_sendfile.SendfileTestsBase, test_utils.TestCase):
    __test__ = False

    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        return Loop()


class StartServerTests(test_server.BaseStartServer, unittest.TestCase):
    __test__ = False

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return Loop()


class StartTLSTests(test_sslproto.BaseStartTLS, unittest.TestCase):
    """start_tls() and TLS connections, as CPython checks them on its selector loop."""

    __test__ = False

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return Loop()


class BufferedProtocolTests(test_buffered_proto.BaseTestBufferedProtocol, unittest.TestCase):
    __test__ = False

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return Loop()


class _Pep492OnNativeLoop:
    """test_pep492's base builds a ``BaseEventLoop`` with a mocked selector; build ours."""

    __test__ = False

    def setUp(self) -> None:
        test_utils.TestCase.setUp(self)  # type: ignore[arg-type]
        self.loop = Loop()
        self.set_event_loop(self.loop)  # type: ignore[attr-defined]


class Pep492LockTests(_Pep492OnNativeLoop, test_pep492.LockTests):
    pass


class Pep492StreamReaderTests(_Pep492OnNativeLoop, test_pep492.StreamReaderTests):
    pass


class Pep492CoroutineTests(_Pep492OnNativeLoop, test_pep492.CoroutineTests):
    pass


class _RunnersOnNativeLoop:
    """test_runners' base builds a ``BaseEventLoop`` with a mocked selector and a stub
    ``shutdown_asyncgens`` it checks was awaited; build ours, keeping the real one."""

    __test__ = False

    def new_loop(self) -> Loop:
        loop = Loop()
        loop.shutdown_ag_run = False
        real_shutdown_asyncgens = loop.shutdown_asyncgens

        async def shutdown_asyncgens() -> None:
            loop.shutdown_ag_run = True
            await real_shutdown_asyncgens()

        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop


class RunTests(_RunnersOnNativeLoop, test_runners.RunTests):
    pass


class RunnerTests(_RunnersOnNativeLoop, test_runners.RunnerTests):
    pass


# -- the selection ---------------------------------------------------------------------------
# (name shown in test ids, class). Classes taken as they are get our loop from the policy.

SELECTED: list[tuple[str, type[unittest.TestCase]]] = [
    ("test_events.EventLoopTests", EventLoopTests),
    # Mostly asyncio.Handle on a mocked loop; test_handle_source_traceback takes ours.
    ("test_events.HandleTests", test_events.HandleTests),
    ("test_events.TestPyGetEventLoop", test_events.TestPyGetEventLoop),
    ("test_events.TestCGetEventLoop", test_events.TestCGetEventLoop),
    ("test_base_events.RunningLoopTests", test_base_events.RunningLoopTests),
    ("test_tasks.RunCoroutineThreadsafeTests", test_tasks.RunCoroutineThreadsafeTests),
    ("test_tasks.SleepTests", test_tasks.SleepTests),
    ("test_tasks.PyCurrentLoopTests", test_tasks.PyCurrentLoopTests),
    ("test_tasks.CCurrentLoopTests", test_tasks.CCurrentLoopTests),
    # Mostly the fake-clock TestLoop, but a good share runs asyncio.new_event_loop().
    ("test_tasks.CTask_CFuture_Tests", test_tasks.CTask_CFuture_Tests),
    ("test_tasks.PyTask_PyFuture_Tests", test_tasks.PyTask_PyFuture_Tests),
    ("test_futures2.CFutureTests", test_futures2.CFutureTests),
    ("test_futures2.PyFutureTests", test_futures2.PyFutureTests),
    ("test_futures2.FutureReprTests", test_futures2.FutureReprTests),
    ("test_locks.LockTests", test_locks.LockTests),
    ("test_locks.EventTests", test_locks.EventTests),
    ("test_locks.ConditionTests", test_locks.ConditionTests),
    ("test_locks.SemaphoreTests", test_locks.SemaphoreTests),
    ("test_locks.BarrierTests", test_locks.BarrierTests),
    ("test_queues.QueueBasicTests", test_queues.QueueBasicTests),
    ("test_queues.QueueGetTests", test_queues.QueueGetTests),
    ("test_queues.QueuePutTests", test_queues.QueuePutTests),
    ("test_queues.LifoQueueTests", test_queues.LifoQueueTests),
    ("test_queues.PriorityQueueTests", test_queues.PriorityQueueTests),
    ("test_queues.QueueJoinTests", test_queues.QueueJoinTests),
    ("test_pep492.LockTests", Pep492LockTests),
    ("test_pep492.StreamReaderTests", Pep492StreamReaderTests),
    ("test_pep492.CoroutineTests", Pep492CoroutineTests),
    ("test_context.DecimalContextTest", test_context.DecimalContextTest),
    ("test_timeouts.TimeoutTests", test_timeouts.TimeoutTests),
    ("test_taskgroups.TestTaskGroup", test_taskgroups.TestTaskGroup),
    ("test_waitfor.AsyncioWaitForTest", test_waitfor.AsyncioWaitForTest),
    ("test_threads.ToThreadTests", test_threads.ToThreadTests),
    ("test_runners.RunTests", RunTests),
    ("test_runners.RunnerTests", RunnerTests),
    # Network I/O, pipes and subprocesses (issue 4): listed as expected failures for now.
    ("test_sock_lowlevel.SockTests", SockTests),
    ("test_sendfile.SendfileTests", SendfileTests),
    ("test_server.StartServerTests", StartServerTests),
    ("test_buffered_proto.BufferedProtocolTests", BufferedProtocolTests),
    ("test_streams.StreamTests", test_streams.StreamTests),
    ("test_ssl.TestSSL", test_ssl.TestSSL),
    ("test_sslproto.StartTLSTests", StartTLSTests),
    ("test_unix_events.TestFunctional", test_unix_events.TestFunctional),
    (
        "test_subprocess.SubprocessThreadedWatcherTests",
        test_subprocess.SubprocessThreadedWatcherTests,
    ),
    ("test_subprocess.SubprocessPidfdWatcherTests", test_subprocess.SubprocessPidfdWatcherTests),
    ("test_subprocess.GenericWatcherTests", test_subprocess.GenericWatcherTests),
]


@dataclass(frozen=True)
class Expectation:
    skip: bool
    reason: str
    flaky: bool = False


def read_expectations(path: Path = EXPECTATIONS) -> dict[str, Expectation]:
    """``test_id  # reason`` per line: expected to fail; ``skip test_id  # reason``: not run;
    ``flaky test_id  # reason``: passes or fails with the timing of the machine, both accepted."""
    expectations: dict[str, Expectation] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, _, reason = line.partition("#")
        words = entry.split()
        skip = words[:1] == ["skip"]
        flaky = words[:1] == ["flaky"]
        if skip or flaky:
            words = words[1:]
        if len(words) != 1 or not reason.strip():
            raise ValueError(
                f"{path.name}:{number}: want '[skip|flaky] test_id  # reason', got {raw!r}"
            )
        expectations[words[0]] = Expectation(skip, reason.strip(), flaky)
    return expectations


def selected_tests() -> dict[str, tuple[type[unittest.TestCase], str]]:
    loader = unittest.TestLoader()
    return {
        f"{name}.{method}": (case, method)
        for name, case in SELECTED
        for method in loader.getTestCaseNames(case)
    }


SELECTED_TESTS = selected_tests()
EXPECTATIONS_BY_ID = read_expectations()


@contextlib.contextmanager
def native_loop_policy() -> Iterator[None]:
    saved = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(MonitoredUvloopEventLoopPolicy())
    # As after CPython's own test setup: no current loop, and none made implicitly (3.12's
    # get_event_loop() would otherwise create one on the main thread).
    asyncio.set_event_loop(None)
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(saved)


def run_unittest(case: type[unittest.TestCase], method: str) -> unittest.TestResult:
    """Runs one test the way unittest would (class and module fixtures included)."""
    result = unittest.TestResult()
    with native_loop_policy():
        unittest.TestSuite([case(method)]).run(result)
    return result


def problems_of(result: unittest.TestResult) -> list[str]:
    problems = [tb for _, tb in result.errors + result.failures]
    problems += [f"unexpected success: {test.id()}" for test in result.unexpectedSuccesses]
    return problems


def skip_reason_of(result: unittest.TestResult) -> Optional[str]:
    return result.skipped[0][1] if result.skipped else None


def gist(traceback_text: str) -> str:
    """The exception line of a traceback (of the last one, when exceptions were chained)."""
    lines = traceback_text.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback ")]
    after_frames = lines[starts[-1] + 1 :] if starts else lines
    for line in after_frames:
        if line and not line[0].isspace():
            return line
    return lines[-1] if lines else traceback_text


def _params() -> list[Any]:
    params = []
    for test_id in SELECTED_TESTS:
        expectation = EXPECTATIONS_BY_ID.get(test_id)
        marks = []
        if expectation is not None:
            # An expected failure may leave a client thread to fail on its own; that is the
            # failure we expect, not news.
            marks.append(
                pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
            )
            if expectation.skip:
                marks.append(pytest.mark.skip(reason=expectation.reason))
        params.append(pytest.param(test_id, id=test_id, marks=marks))
    return params


@pytest.mark.timeout(PER_TEST_TIMEOUT)
@pytest.mark.parametrize("test_id", _params())
def test_cpython_asyncio(test_id: str) -> None:
    case, method = SELECTED_TESTS[test_id]
    result = run_unittest(case, method)
    problems = problems_of(result)
    if any("from pytest-timeout" in problem for problem in problems):
        pytest.fail(
            f"{test_id} hung: list it as `skip` in tests/cpython/{EXPECTATIONS.name}",
            pytrace=False,
        )
    expectation = EXPECTATIONS_BY_ID.get(test_id)
    if expectation is not None:
        if problems:
            pytest.xfail(f"{expectation.reason}: {gist(problems[0])}")
        if skip_reason_of(result) is None and not expectation.flaky:
            pytest.fail(
                f"{test_id} passes now: remove it from tests/cpython/{EXPECTATIONS.name}",
                pytrace=False,
            )
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    skipped = skip_reason_of(result)
    if skipped is not None:
        pytest.skip(skipped)


def test_expectations_name_selected_tests() -> None:
    """A stale line (test renamed or deselected) would otherwise hide silently."""
    unknown = sorted(set(EXPECTATIONS_BY_ID) - set(SELECTED_TESTS))
    assert not unknown, f"{EXPECTATIONS.name} lists tests that are not selected: {unknown}"
