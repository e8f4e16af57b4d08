"""The blocked-loop watchdog, Python side: the capturer thread and each loop's watch.

The native ticker thread (src/monitoring/watchdog.rs) notices a dispatch running past its
loop's threshold and hands a job to the capturer, a daemon thread started here that waits for
jobs in native code with the GIL released. With a job in hand it takes the GIL, reads the loop
thread's stack (``sys._current_frames``) while that dispatch still runs, and reports it once: a
``WatchdogReport`` kept for the loop's snapshot, a WARNING on ``monitored_ioloop.watchdog``,
and the optional callback. When the dispatch ends, the loop fills in its final wall time.

One ticker and one capturer serve every loop of the process; both stop at interpreter exit,
and a forked child starts its own when a loop there asks for one.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import dataclasses
import logging
import os
import sys
import threading
import traceback
import weakref
from types import FrameType
from typing import Any, Callable, Optional

from monitored_ioloop import _native
from monitored_ioloop.monitoring import WatchdogReport

logger = logging.getLogger("monitored_ioloop.watchdog")

#: Reports kept per loop (the newest; the total is counted apart).
REPORTS_KEPT = 64
#: How long the capturer waits for a job before looking whether it should stop.
_WAIT_SECONDS = 1.0

_lock = threading.Lock()
_watches: dict[int, weakref.ReferenceType[LoopWatch]] = {}
_capturer: Optional[threading.Thread] = None
_capturer_pid: Optional[int] = None
_stopping = False

WatchdogCallback = Callable[[WatchdogReport], object]


def check_options(threshold: Any, callback: Any) -> float:
    """The threshold in seconds, once both options are known to be usable."""
    if threshold is None:
        raise ValueError("watchdog_callback needs a watchdog_threshold")
    if callback is not None and not callable(callback):
        raise TypeError("watchdog_callback must be callable or None")
    return _check_threshold(threshold)


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(
            f"watchdog_threshold must be a number of seconds, not {type(threshold).__name__}"
        )
    if not threshold > 0 or threshold == float("inf"):
        raise ValueError(
            f"watchdog_threshold must be a positive number of seconds, got {threshold}"
        )
    return float(threshold)


class LoopWatch:
    """One loop's registration with the watchdog, and the reports made for it."""

    def __init__(self, loop: Any, threshold: float, callback: Optional[WatchdogCallback]) -> None:
        self._loop = weakref.ref(loop)
        self.threshold = threshold
        self.callback = callback
        self._reports: collections.deque[tuple[int, WatchdogReport]] = collections.deque(
            maxlen=REPORTS_KEPT
        )
        self._total = 0
        self._report_lock = threading.Lock()
        self._watch_id: Optional[int] = None

    @classmethod
    def start(
        cls, loop: Any, threshold: Any, callback: Optional[WatchdogCallback] = None
    ) -> LoopWatch:
        seconds = check_options(threshold, callback)
        watch = cls(loop, seconds, callback)
        _ensure_capturer()
        watch._watch_id = loop._watchdog_watch(seconds)
        with _lock:
            _watches[watch._watch_id] = weakref.ref(watch)
        return watch

    def stop(self) -> None:
        watch_id, self._watch_id = self._watch_id, None
        if watch_id is None:
            return
        with _lock:
            _watches.pop(watch_id, None)
        loop = self._loop()
        if loop is not None:
            loop._watchdog_unwatch(watch_id)

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:  # interpreter shutdown: nothing left to unregister from
            pass

    def reports(self) -> tuple[tuple[WatchdogReport, ...], int]:
        with self._report_lock:
            return tuple(r for _, r in self._reports), self._total

    # -- called by the capturer thread, and by the loop when a reported dispatch ends ----------

    def _report(
        self, seq: int, started_tick: int, blocked_for: float, gil_unavailable: bool
    ) -> None:
        loop = self._loop()
        if loop is None:
            return
        thread_id = loop._thread_id or 0
        still_running = loop._running_dispatch() == seq
        stack = ""
        name = ""
        # Taken even when the GIL came late: while the same dispatch still runs, its stack is
        # still the one that blocks.
        if still_running:
            frame = sys._current_frames().get(thread_id)
            if frame is not None:
                stack = "".join(traceback.format_stack(frame))
                name = _dispatch_name(loop, frame)
        report = WatchdogReport(
            started_at=loop._loop_time_of_tick(started_tick),
            blocked_for=blocked_for,
            thread_id=thread_id,
            stack=stack,
            gil_unavailable=gil_unavailable,
            name=name,
        )
        with self._report_lock:
            self._reports.append((seq, report))
            self._total += 1
        if gil_unavailable and not stack:
            logger.warning(
                "Event loop blocked for more than %.3f seconds; its thread held the GIL, so "
                "no stack could be taken",
                blocked_for,
                extra=_log_fields(report),
            )
        else:
            logger.warning(
                "Event loop blocked for %.3f seconds in %s; stack of the loop thread:\n%s",
                blocked_for,
                name or "a callback",
                stack,
                extra=_log_fields(report),
            )
        if self.callback is not None:
            try:
                self.callback(report)
            except Exception:
                logger.exception("watchdog_callback raised")

    def _finished(self, seq: int, wall_time: float) -> None:
        with self._report_lock:
            for i, (reported_seq, report) in enumerate(self._reports):
                if reported_seq == seq:
                    self._reports[i] = (seq, dataclasses.replace(report, wall_time=wall_time))


def _log_fields(report: WatchdogReport) -> dict[str, Any]:
    return {
        "blocked_for": report.blocked_for,
        "thread_id": report.thread_id,
        "callback_name": report.name,
        "stack": report.stack,
        "gil_unavailable": report.gil_unavailable,
    }


def _dispatch_name(loop: Any, frame: FrameType) -> str:
    """What the loop is running: the running task (by name and coroutine), or the outermost
    frame the loop called into."""
    task = asyncio.current_task(loop)
    if task is not None:
        coro = task.get_coro()
        qualname = getattr(coro, "__qualname__", None) or type(coro).__qualname__
        return f"{task.get_name()} ({qualname})"
    run_forever = getattr(type(loop).run_forever, "__code__", None)
    outermost: Optional[FrameType] = None
    current: Optional[FrameType] = frame
    while current is not None:
        if current.f_code is run_forever:
            break
        outermost = current
        current = current.f_back
    if outermost is None:
        return ""
    code = outermost.f_code
    return str(getattr(code, "co_qualname", code.co_name))


def _capture_forever() -> None:
    while not _stopping:
        job = _native._watchdog_next_job(_WAIT_SECONDS)
        if job is None:
            continue
        watch_id, seq, started_tick, blocked_for, gil_unavailable = job
        with _lock:
            ref = _watches.get(watch_id)
        watch = ref() if ref is not None else None
        if watch is None:
            continue
        try:
            watch._report(seq, started_tick, blocked_for, gil_unavailable)
        except Exception:
            logger.exception("the watchdog could not report a blocked loop")


def _ensure_capturer() -> None:
    global _capturer, _capturer_pid
    with _lock:
        pid = os.getpid()
        if _capturer is not None and _capturer_pid == pid and _capturer.is_alive():
            return
        if _capturer_pid != pid:
            # A forked child: the parent's registrations and threads do not exist here.
            _watches.clear()
        _capturer = threading.Thread(
            target=_capture_forever, name="monitored_ioloop-watchdog-capture", daemon=True
        )
        _capturer_pid = pid
        _capturer.start()


@atexit.register
def _stop_at_exit() -> None:
    """Stops both threads before the interpreter finalises: the ticker ends and the capturer's
    wait returns at once, so neither touches a finalising interpreter."""
    global _stopping
    _stopping = True
    _native._watchdog_shutdown()
    capturer = _capturer
    if capturer is not None and _capturer_pid == os.getpid() and capturer.is_alive():
        capturer.join(timeout=1.0)
