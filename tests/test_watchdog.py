"""The blocked-loop watchdog: a dispatch stuck past the threshold is reported while it still
runs, with the loop thread's stack; a healthy loop is never reported; starting, stopping, many
loops, misbehaving callbacks and interpreter exit neither crash nor hang."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from monitored_ioloop.loop import Loop
from monitored_ioloop.monitoring import WatchdogReport

pytestmark = pytest.mark.timeout(60)

THRESHOLD = 0.1


class Reports:
    """A watchdog callback that notes, for each report, whether the blocking call was still
    running when it arrived."""

    def __init__(self) -> None:
        self.reports: list[WatchdogReport] = []
        self.while_blocked: list[bool] = []
        self.blocked = threading.Event()

    def __call__(self, report: WatchdogReport) -> None:
        self.while_blocked.append(self.blocked.is_set())
        self.reports.append(report)


def sleeping_callback(reports: Reports) -> None:
    reports.blocked.set()
    time.sleep(0.5)  # blocking line: sleep
    reports.blocked.clear()


def spinning_callback(reports: Reports) -> None:
    reports.blocked.set()
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:  # blocking line: spin
        pass  # blocking line: spin (the loop's jump back is counted on this line before 3.10)
    reports.blocked.clear()


def blocking_lines(function: Any) -> list[int]:
    """The numbers of `function`'s lines marked "# blocking line": where its stack may be
    caught while it blocks."""
    source, first = inspect.getsourcelines(function)
    return [first + i for i, text in enumerate(source) if "# blocking line" in text]


@pytest.mark.parametrize("blocker", [sleeping_callback, spinning_callback])
def test_a_blocked_dispatch_is_reported_before_it_finishes(blocker: Any) -> None:
    reports = Reports()
    loop = Loop(watchdog_threshold=THRESHOLD, watchdog_callback=reports)
    try:
        loop.call_soon(blocker, reports)
        loop.call_soon(loop.stop)
        loop.run_forever()
        snap = loop.monitor_snapshot()
    finally:
        loop.close()
    assert len(reports.reports) == 1, reports.reports
    assert reports.while_blocked == [True]
    report = reports.reports[0]
    caught_at = re.findall(rf"line (\d+), in {blocker.__name__}\n", report.stack)
    assert caught_at and int(caught_at[-1]) in blocking_lines(blocker), report.stack
    assert report.blocked_for >= THRESHOLD
    assert report.name == blocker.__name__
    assert report.thread_id == threading.get_ident()
    # The snapshot has it too, completed with the final wall time.
    assert snap.watchdog_reports_total == 1
    (kept,) = snap.watchdog_reports
    assert kept.wall_time is not None and kept.wall_time >= 0.5
    assert kept.stack == report.stack


def test_a_blocked_task_step_is_named_after_its_task() -> None:
    reports = Reports()
    loop = Loop(watchdog_threshold=THRESHOLD, watchdog_callback=reports)

    async def handler() -> None:
        await asyncio.sleep(0)
        reports.blocked.set()
        time.sleep(0.3)

    try:
        loop.run_until_complete(loop.create_task(handler(), name="req-7"))
    finally:
        loop.close()
    (report,) = reports.reports
    assert report.name.startswith("req-7 (") and "handler" in report.name
    assert "time.sleep(0.3)" in report.stack


def test_watchdog_reports_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    loop = Loop(watchdog_threshold=THRESHOLD)
    try:
        with caplog.at_level(logging.WARNING, logger="monitored_ioloop.watchdog"):
            loop.call_soon(time.sleep, 0.3)
            loop.call_soon(loop.stop)
            loop.run_forever()
    finally:
        loop.close()
    (record,) = [r for r in caplog.records if r.name == "monitored_ioloop.watchdog"]
    assert "blocked" in record.getMessage()
    assert record.blocked_for >= THRESHOLD  # type: ignore[attr-defined]
    assert "time.sleep" not in record.stack or record.stack  # type: ignore[attr-defined]


def test_a_healthy_loop_is_never_reported() -> None:
    reports = Reports()
    loop = Loop(watchdog_threshold=0.05, watchdog_callback=reports)

    async def busy_but_healthy() -> None:
        for _ in range(200):
            time.sleep(0.001)
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)

    try:
        loop.run_until_complete(busy_but_healthy())
        assert loop.monitor_snapshot().watchdog_reports_total == 0
    finally:
        loop.close()
    assert reports.reports == []


def test_each_stuck_dispatch_is_reported_once() -> None:
    reports = Reports()
    loop = Loop(watchdog_threshold=0.05, watchdog_callback=reports)
    try:
        for _ in range(3):
            loop.call_soon(time.sleep, 0.25)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert len(reports.reports) == 3


def test_watchdog_can_be_started_and_stopped_repeatedly() -> None:
    for _ in range(20):
        loop = Loop(watchdog_threshold=0.05)
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.set_watchdog(None)
        loop.set_watchdog(0.05)
        loop.close()
    reports = Reports()
    loop = Loop()
    try:
        loop.set_watchdog(THRESHOLD, reports)
        loop.call_soon(time.sleep, 0.3)
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.set_watchdog(None)
        loop.call_soon(time.sleep, 0.3)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert len(reports.reports) == 1


def test_many_loops_in_threads_are_watched_separately() -> None:
    found: dict[int, list[WatchdogReport]] = {}

    def run(index: int) -> None:
        reports: list[WatchdogReport] = []
        found[index] = reports
        loop = Loop(watchdog_threshold=THRESHOLD, watchdog_callback=reports.append)
        try:
            if index % 2 == 0:
                loop.call_soon(time.sleep, 0.3)
            loop.call_later(0.35, loop.stop)
            loop.run_forever()
        finally:
            loop.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for index, reports in found.items():
        assert len(reports) == (1 if index % 2 == 0 else 0), (index, reports)


@pytest.mark.parametrize("behaviour", ["raises", "blocks", "stops the loop", "schedules work"])
def test_a_misbehaving_watchdog_callback_does_not_break_the_loop(behaviour: str) -> None:
    loop = Loop()
    seen: list[str] = []

    def callback(report: WatchdogReport) -> None:
        seen.append(behaviour)
        if behaviour == "raises":
            raise RuntimeError("watchdog callback failure")
        if behaviour == "blocks":
            time.sleep(0.5)
        if behaviour == "stops the loop":
            loop.stop()
        if behaviour == "schedules work":
            loop.call_soon_threadsafe(seen.append, "scheduled")

    try:
        loop.set_watchdog(THRESHOLD, callback)
        loop.call_soon(time.sleep, 0.3)
        stopper = loop.call_later(0.4, loop.stop)
        loop.run_forever()
        stopper.cancel()
        if behaviour == "stops the loop":
            loop.call_later(0.1, loop.stop)
            loop.run_forever()
        result = loop.run_until_complete(asyncio.sleep(0.01, result="still works"))
    finally:
        loop.close()
    assert result == "still works"
    assert seen[0] == behaviour
    if behaviour == "schedules work":
        assert "scheduled" in seen


def test_watchdog_options_through_the_factory() -> None:
    from monitored_ioloop.monitored_uvloop import monitored_uvloop_loop_factory

    reports: list[WatchdogReport] = []
    loop = monitored_uvloop_loop_factory(
        watchdog_threshold=THRESHOLD, watchdog_callback=reports.append
    )()
    try:
        loop.call_soon(time.sleep, 0.3)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert len(reports) == 1


def run_child(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_interpreter_exit_while_a_loop_is_blocked_does_not_hang_or_crash() -> None:
    # A daemon thread's loop is stuck (and reported) when the main thread exits.
    result = run_child(
        """
        import threading, time
        from monitored_ioloop.loop import Loop

        def stuck():
            loop = Loop(watchdog_threshold=0.05)
            loop.call_soon(time.sleep, 30)
            loop.run_forever()

        threading.Thread(target=stuck, daemon=True).start()
        time.sleep(0.3)
        print("exiting")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "exiting" in result.stdout
    assert "Event loop blocked" in result.stderr


def test_exit_from_inside_a_reported_dispatch_does_not_hang_or_crash() -> None:
    result = run_child(
        """
        import sys, time
        from monitored_ioloop.loop import Loop

        def block_then_exit():
            time.sleep(0.3)
            sys.exit(3)

        loop = Loop(watchdog_threshold=0.05)
        loop.call_soon(block_then_exit)
        loop.run_forever()
        """
    )
    assert result.returncode == 3, result.stderr
    assert "Event loop blocked" in result.stderr


def test_a_forked_child_gets_its_own_watchdog() -> None:
    result = run_child(
        """
        import os, time
        from monitored_ioloop.loop import Loop

        loop = Loop(watchdog_threshold=0.05)
        loop.call_soon(time.sleep, 0.2)
        loop.call_soon(loop.stop)
        loop.run_forever()
        pid = os.fork()
        if pid == 0:
            reports = []
            child = Loop(watchdog_threshold=0.05, watchdog_callback=reports.append)
            child.call_soon(time.sleep, 0.3)
            child.call_soon(child.stop)
            child.run_forever()
            os._exit(0 if len(reports) == 1 else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "child 0" in result.stdout
