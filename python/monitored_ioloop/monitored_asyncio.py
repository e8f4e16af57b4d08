"""The original pure-Python monitored loop: asyncio's own ``SelectorEventLoop`` with each
callback handle timed in Python. Slower than the native loop (its timing runs in Python), kept
for users who want the stdlib loop itself.

Fixed against the original: a cancelled handle and a callback that raises both leave the
pending count; timers and thread-safe calls are monitored too; the count is per loop.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from asyncio import events
from asyncio.log import logger
from contextvars import Context
from typing import Any, Callable, Optional

from monitored_ioloop._names import callback_pretty_name
from monitored_ioloop.monitored_ioloop_base import BaseMonitoredEventLoopPolicy
from monitored_ioloop.monitoring import IoLoopMonitorState, MonitorCallback

__all__ = [
    "IoLoopMonitorState",
    "MonitoredAsyncIOEventLoopPolicy",
    "MonitoredSelectorEventLoop",
    "monitored_asyncio_loop_factory",
]

_monotonic = time.monotonic


class _PendingCount:
    """Handles created and neither run nor cancelled yet; thread-safe calls touch it too."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


class _MonitoredMixin:
    """Times ``_run`` and keeps the pending count exact across run, cancel and errors."""

    _loop: MonitoredSelectorEventLoop
    _callback: Any
    _pending: bool
    _ready_at: float

    def _leave(self) -> None:
        if self._pending:
            self._pending = False
            self._loop._pending_handles.add(-1)

    def cancel(self) -> None:
        self._leave()
        super().cancel()  # type: ignore[misc]

    def _run(self) -> None:
        self._leave()
        loop = self._loop
        callback = self._callback
        start = _monotonic()
        try:
            super()._run()  # type: ignore[misc]
        finally:
            end = _monotonic()
            loop._report(callback, end - start, max(0.0, start - self._ready_at))


class _MonitoredHandle(_MonitoredMixin, events.Handle):
    pass


class _MonitoredTimerHandle(_MonitoredMixin, events.TimerHandle):
    pass


def _check_min_wall_time(seconds: Optional[float]) -> float:
    if seconds is None:
        return 0.0
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(
            f"monitor_min_wall_time must be a number of seconds or None, not "
            f"{type(seconds).__name__}"
        )
    if not seconds >= 0:
        raise ValueError(f"monitor_min_wall_time must be >= 0 seconds, got {seconds}")
    return float(seconds)


class MonitoredSelectorEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop, reporting an ``IoLoopMonitorState`` after each callback (or
    each of at least ``monitor_min_wall_time`` seconds)."""

    def __init__(
        self,
        monitor_callback: Optional[MonitorCallback] = None,
        *args: Any,
        monitor_min_wall_time: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        self._monitor_callback = monitor_callback
        self._monitor_min_wall_time = _check_min_wall_time(monitor_min_wall_time)
        self._pending_handles = _PendingCount()
        super().__init__(*args, **kwargs)

    def _report(self, callback: Any, wall: float, lag: float) -> None:
        monitor = self._monitor_callback
        if monitor is None or wall < self._monitor_min_wall_time:
            return
        try:
            monitor(
                IoLoopMonitorState(
                    callback_wall_time=wall,
                    callback_pretty_name=callback_pretty_name(callback),
                    loop_handles_count=self._pending_handles.value,
                    loop_lag=lag,
                )
            )
        except Exception:
            logger.warning("Monitor callback failed.", exc_info=True)

    def _call_soon(
        self, callback: Callable[..., object], args: Any, context: Optional[Context]
    ) -> events.Handle:
        handle = _MonitoredHandle(callback, args, self, context)
        if handle._source_traceback:  # type: ignore[attr-defined]
            del handle._source_traceback[-1]  # type: ignore[attr-defined]
        handle._pending = True
        handle._ready_at = _monotonic()
        self._pending_handles.add(1)
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: Optional[Context] = None,
    ) -> events.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()  # type: ignore[attr-defined]
        if self._debug:  # type: ignore[attr-defined]
            self._check_thread()  # type: ignore[attr-defined]
            self._check_callback(callback, "call_at")  # type: ignore[attr-defined]
        timer = _MonitoredTimerHandle(when, callback, args, self, context)
        if timer._source_traceback:  # type: ignore[attr-defined]
            del timer._source_traceback[-1]  # type: ignore[attr-defined]
        timer._pending = True
        timer._ready_at = when
        self._pending_handles.add(1)
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer


class MonitoredAsyncIOEventLoopPolicy(BaseMonitoredEventLoopPolicy):
    """A policy whose loops are :class:`MonitoredSelectorEventLoop`."""

    def __init__(
        self,
        monitor_callback: Optional[MonitorCallback] = None,
        *,
        monitor_min_wall_time: Optional[float] = None,
    ) -> None:
        super().__init__(monitor_callback)  # type: ignore[arg-type]
        self._monitor_min_wall_time = _check_min_wall_time(monitor_min_wall_time)

    def _loop_factory(self) -> MonitoredSelectorEventLoop:
        return MonitoredSelectorEventLoop(
            self._monitor_callback, monitor_min_wall_time=self._monitor_min_wall_time
        )


def monitored_asyncio_loop_factory(
    monitor_callback: Optional[MonitorCallback] = None,
    *,
    monitor_min_wall_time: Optional[float] = None,
) -> Callable[[], MonitoredSelectorEventLoop]:
    """A ``loop_factory`` for ``asyncio.run``/``asyncio.Runner``."""
    min_wall_time = _check_min_wall_time(monitor_min_wall_time)

    def factory() -> MonitoredSelectorEventLoop:
        return MonitoredSelectorEventLoop(monitor_callback, monitor_min_wall_time=min_wall_time)

    return factory
