"""The loops the benchmark compares, each built by name inside the measuring process."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Callable, Dict

from monitored_ioloop.monitoring import IoLoopMonitorState


def _trivial_monitor(state: IoLoopMonitorState) -> None:
    """A monitor that does what a cheap real one does: read the figures."""
    if state.callback_wall_time > 1.0 or state.loop_lag > 1.0:
        raise AssertionError("a micro benchmark callback should never take a second")


def _asyncio() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def _monitored_asyncio() -> asyncio.AbstractEventLoop:
    from monitored_ioloop.monitored_asyncio import MonitoredSelectorEventLoop

    return MonitoredSelectorEventLoop(_trivial_monitor)


def _uvloop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def _rloop() -> asyncio.AbstractEventLoop:
    import rloop  # type: ignore[import-untyped,unused-ignore]

    loop: asyncio.AbstractEventLoop = rloop.new_event_loop()
    return loop


def _native() -> asyncio.AbstractEventLoop:
    from monitored_ioloop.loop import Loop

    return Loop()


def _native_monitored() -> asyncio.AbstractEventLoop:
    from monitored_ioloop.loop import Loop

    return Loop(monitor_callback=_trivial_monitor)


def _native_bare() -> asyncio.AbstractEventLoop:
    """The native loop with its always-on aggregates switched off: what they cost."""
    from monitored_ioloop.loop import Loop

    loop = Loop()
    loop._set_aggregating(False)
    return loop


def _native_min_wall() -> asyncio.AbstractEventLoop:
    """A monitor callback called only for dispatches of 10 ms or more (none, here)."""
    from monitored_ioloop.loop import Loop

    return Loop(monitor_callback=_trivial_monitor, monitor_min_wall_time=0.01)


def _native_watchdog() -> asyncio.AbstractEventLoop:
    from monitored_ioloop.loop import Loop

    return Loop(watchdog_threshold=0.5)


LOOPS: Dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": _asyncio,
    "monitored-asyncio": _monitored_asyncio,
    "uvloop": _uvloop,
    "rloop": _rloop,
    "native": _native,
    "native+monitor": _native_monitored,
    "native-bare": _native_bare,
    "native+min-wall": _native_min_wall,
    "native+watchdog": _native_watchdog,
}

#: The loops of the "monitoring cost" table, each compared with the plain native loop.
COST_LOOPS = ("native-bare", "native+min-wall", "native+watchdog", "native+monitor")


def available_loops() -> list[str]:
    names = list(LOOPS)
    for optional in ("uvloop", "rloop"):
        if importlib.util.find_spec(optional) is None:
            names.remove(optional)
    return names
