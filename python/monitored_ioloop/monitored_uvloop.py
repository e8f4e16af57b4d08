"""The native loop under the original package's uvloop names, plus uvloop-style entry points
(``new_event_loop``, ``run``, ``EventLoopPolicy``) so it can stand in for uvloop."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable, Coroutine, Optional, TypeVar

from monitored_ioloop import config
from monitored_ioloop.loop import (
    DEFAULT_SLOW_CALLBACK_CAPACITY,
    DEFAULT_SLOW_CALLBACK_THRESHOLD,
    Loop,
)
from monitored_ioloop.monitored_ioloop_base import BaseMonitoredEventLoopPolicy
from monitored_ioloop.monitoring import IoLoopMonitorState, MonitorCallback, WatchdogReport

__all__ = [
    "EventLoopPolicy",
    "IoLoopMonitorState",
    "Loop",
    "MonitoredUvloopEventLoop",
    "MonitoredUvloopEventLoopPolicy",
    "monitored_uvloop_loop_factory",
    "new_event_loop",
    "run",
]

_T = TypeVar("_T")

WatchdogCallback = Callable[[WatchdogReport], object]


class MonitoredUvloopEventLoop(Loop):
    """The native loop; ``monitor_callback`` is called after every dispatch (or those of at
    least ``monitor_min_wall_time``); the other keyword options are
    :class:`~monitored_ioloop.loop.Loop`'s."""

    def __init__(
        self,
        monitor_callback: Optional[MonitorCallback] = None,
        *args: Any,
        monitor_min_wall_time: Optional[float] = None,
        slow_callback_threshold: Optional[float] = DEFAULT_SLOW_CALLBACK_THRESHOLD,
        slow_callback_capacity: int = DEFAULT_SLOW_CALLBACK_CAPACITY,
        watchdog_threshold: Optional[float] = None,
        watchdog_callback: Optional[WatchdogCallback] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            monitor_callback,
            monitor_min_wall_time=monitor_min_wall_time,
            slow_callback_threshold=slow_callback_threshold,
            slow_callback_capacity=slow_callback_capacity,
            watchdog_threshold=watchdog_threshold,
            watchdog_callback=watchdog_callback,
        )


class MonitoredUvloopEventLoopPolicy(BaseMonitoredEventLoopPolicy):
    """``asyncio.set_event_loop_policy(MonitoredUvloopEventLoopPolicy(cb))`` then
    ``asyncio.run(main())``; keyword options as for :class:`MonitoredUvloopEventLoop`."""

    def __init__(
        self, monitor_callback: Optional[MonitorCallback] = None, **options: Any
    ) -> None:
        super().__init__(monitor_callback)  # type: ignore[arg-type]
        # Checked now, not at the first new_event_loop(): a bad value is the caller's mistake.
        MonitoredUvloopEventLoop(None, **options).close()
        self._options = options

    def _loop_factory(self) -> MonitoredUvloopEventLoop:
        return MonitoredUvloopEventLoop(self._monitor_callback, **self._options)


EventLoopPolicy = MonitoredUvloopEventLoopPolicy


def monitored_uvloop_loop_factory(
    monitor_callback: Optional[MonitorCallback] = None,
    *,
    monitor_min_wall_time: Optional[float] = None,
    slow_callback_threshold: Optional[float] = DEFAULT_SLOW_CALLBACK_THRESHOLD,
    slow_callback_capacity: int = DEFAULT_SLOW_CALLBACK_CAPACITY,
    watchdog_threshold: Optional[float] = None,
    watchdog_callback: Optional[WatchdogCallback] = None,
) -> Callable[[], MonitoredUvloopEventLoop]:
    """A ``loop_factory`` for ``asyncio.run``/``asyncio.Runner``; the options are checked now."""
    options: dict[str, Any] = dict(
        monitor_min_wall_time=monitor_min_wall_time,
        slow_callback_threshold=slow_callback_threshold,
        slow_callback_capacity=slow_callback_capacity,
        watchdog_threshold=watchdog_threshold,
        watchdog_callback=watchdog_callback,
    )
    MonitoredUvloopEventLoop(None, **options).close()

    def factory() -> MonitoredUvloopEventLoop:
        return MonitoredUvloopEventLoop(monitor_callback, **options)

    return factory


def new_event_loop() -> MonitoredUvloopEventLoop:
    """A new native loop without monitor (uvicorn's ``--loop module:new_event_loop``), with the
    options of the ``MONITORED_IOLOOP_*`` environment variables (``monitored_ioloop.config``)."""
    settings = config.from_env()
    loop = MonitoredUvloopEventLoop(**settings.loop_options)
    config.apply_env(loop, settings)
    return loop


def run(
    main: Coroutine[Any, Any, _T],
    *,
    monitor_callback: Optional[MonitorCallback] = None,
    debug: Optional[bool] = None,
    **options: Any,
) -> _T:
    """``asyncio.run`` on the native loop; ``options`` are the loop's keyword options."""
    factory = monitored_uvloop_loop_factory(monitor_callback, **options)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory, debug=debug) as runner:
            return runner.run(main)
    return _run_legacy(main, factory, debug)


def _run_legacy(
    main: Coroutine[Any, Any, _T], factory: Callable[[], Loop], debug: Optional[bool]
) -> _T:
    """``asyncio.run`` for 3.9 and 3.10, which take no loop factory."""
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("run() cannot be called from a running event loop")
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    loop.call_exception_handler(
                        {
                            "message": "unhandled exception during asyncio.run() shutdown",
                            "exception": task.exception(),
                            "task": task,
                        }
                    )
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
