"""What a monitor callback receives: :class:`IoLoopMonitorState`, one per dispatch.

The class is native (built by the loop after each callback, its name computed only when read)
and dataclass-compatible: ``dataclasses.fields``/``asdict``/``replace`` work on it, with the
original package's four fields in their original order.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from monitored_ioloop._native import IoLoopMonitorState

__all__ = ["IoLoopMonitorState", "MonitorCallback"]

MonitorCallback = Callable[[IoLoopMonitorState], None]


@dataclasses.dataclass
class _Fields:
    callback_wall_time: float
    callback_pretty_name: str
    loop_handles_count: int
    loop_lag: float


IoLoopMonitorState.__dataclass_fields__ = _Fields.__dataclass_fields__  # type: ignore[attr-defined]
IoLoopMonitorState.__dataclass_params__ = _Fields.__dataclass_params__  # type: ignore[attr-defined]

# The original package's Python-side wrapper names, still importable from here.
from monitored_ioloop._legacy_monitoring import (  # noqa: E402
    IoLoopInnerState,
    MonitoredCallbackWrapper,
    wrap_callback_with_monitoring,
)

__all__ += ["IoLoopInnerState", "MonitoredCallbackWrapper", "wrap_callback_with_monitoring"]
