"""The policy base the original package's policies share: a default policy whose loops get a
monitor callback."""

from __future__ import annotations

import asyncio

from monitored_ioloop.monitoring import MonitorCallback

__all__ = ["BaseMonitoredEventLoopPolicy"]


class BaseMonitoredEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """Creates monitored loops; subclasses say which loop in ``_loop_factory``."""

    def __init__(self, monitor_callback: MonitorCallback) -> None:
        super().__init__()
        self._monitor_callback = monitor_callback

    def _loop_factory(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError
