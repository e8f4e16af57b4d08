"""The original package's Python-side wrapping of callbacks (``IoLoopInnerState``,
``MonitoredCallbackWrapper``, ``wrap_callback_with_monitoring``), kept for code that used them
directly; re-exported by ``monitored_ioloop.monitoring``. The loops no longer use them: the
native loop times callbacks itself, ``monitored_asyncio`` times handles."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

from monitored_ioloop._native import IoLoopMonitorState
from monitored_ioloop.formatting_utils import pretty_callback_name, pretty_format_handle

__all__ = ["IoLoopInnerState", "MonitoredCallbackWrapper", "wrap_callback_with_monitoring"]

logger = logging.getLogger("monitored_ioloop.monitoring")


class IoLoopInnerState:
    """A thread-safe count of handles scheduled and not yet run."""

    def __init__(self, handles_count: int = 0) -> None:
        self.handles_count = handles_count
        self.handles_count_lock = threading.Lock()

    def increase_handles_count_thread_safe(self, increase_by: int) -> None:
        with self.handles_count_lock:
            self.handles_count += increase_by

    def decrease_handles_count_thread_safe(self, decrease_by: int) -> None:
        with self.handles_count_lock:
            self.handles_count -= decrease_by


class MonitoredCallbackWrapper:
    """Wraps a callback: when called, runs it, then reports an ``IoLoopMonitorState`` (wall
    time, lag since wrapping, pending count) to ``monitor_callback``. Other attributes are the
    wrapped callback's."""

    def __init__(
        self,
        callback: Callable[..., Any],
        monitor_callback: Callable[[IoLoopMonitorState], None],
        io_loop_state: IoLoopInnerState,
    ) -> None:
        self._self_original_callback = callback
        self._self_monitor_callback = monitor_callback
        self._self_ioloop_state = io_loop_state
        self._self_added_to_loop_time = time.perf_counter()
        self._self_handle: Optional[Any] = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._self_original_callback, name)

    def set_handle(self, handle: Any) -> None:
        self._self_handle = handle

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        loop_lag = time.perf_counter() - self._self_added_to_loop_time
        start = time.perf_counter()
        response = self._self_original_callback(*args, **kwargs)
        self._self_ioloop_state.decrease_handles_count_thread_safe(1)
        wall_time = time.perf_counter() - start
        try:
            pretty_name = (
                pretty_format_handle(self._self_handle)
                if self._self_handle is not None
                else pretty_callback_name(self._self_original_callback)
            )
            self._self_monitor_callback(
                IoLoopMonitorState(
                    callback_wall_time=wall_time,
                    callback_pretty_name=pretty_name,
                    loop_handles_count=self._self_ioloop_state.handles_count,
                    loop_lag=loop_lag,
                )
            )
        except Exception:
            logger.warning("Monitor callback failed.", exc_info=True)
        return response


def wrap_callback_with_monitoring(
    callback: Callable[..., Any],
    monitor_callback: Callable[[IoLoopMonitorState], None],
    ioloop_state: IoLoopInnerState,
) -> MonitoredCallbackWrapper:
    """Counts one more pending handle and wraps ``callback`` to report when it runs."""
    ioloop_state.increase_handles_count_thread_safe(1)
    return MonitoredCallbackWrapper(callback, monitor_callback, ioloop_state)
