"""A stand-in for the native monitoring core (issue 7) until it lands: a ``Loop`` whose
``monitor_snapshot()`` returns a snapshot with the contract's attributes, built in Python from
the per-dispatch monitor reports. ``LOOP_FACTORY`` names the real factory once the loop has
``monitor_snapshot``, so tests written against it run on the real thing unchanged."""

from __future__ import annotations

import bisect
import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

from monitored_ioloop import config
from monitored_ioloop.loop import Loop

REAL = hasattr(Loop, "monitor_snapshot")
LOOP_FACTORY = (
    "monitored_ioloop.monitored_uvloop:new_event_loop" if REAL else "monitoring_fake:new_event_loop"
)
KINDS = ("callback", "timer", "io", "threadsafe", "signal")
slow_logger = logging.getLogger("monitored_ioloop.slow_callbacks")


class FakeHistogram:
    def __init__(self, values: Optional[list[float]] = None) -> None:
        self._values = sorted(values or [])

    count = property(lambda self: len(self._values))
    sum = property(lambda self: float(math.fsum(self._values)))
    max = property(lambda self: self._values[-1] if self._values else 0.0)
    min = property(lambda self: self._values[0] if self._values else 0.0)
    mean = property(lambda self: self.sum / self.count if self._values else 0.0)

    def percentile(self, q: float) -> float:
        if not 0 <= q <= 100:
            raise ValueError(q)
        if not self._values:
            return 0.0
        return self._values[min(len(self._values) - 1, int(q / 100 * len(self._values)))]

    def cumulative_count(self, upper_bound: float) -> int:
        return bisect.bisect_right(self._values, upper_bound)

    def buckets(self) -> list[tuple[float, int]]:
        bounds = sorted(set(self._values))
        return [(b, self.cumulative_count(b)) for b in bounds]

    def since(self, previous: FakeHistogram) -> FakeHistogram:
        rest = list(self._values)
        for v in previous._values:
            rest.remove(v)
        return FakeHistogram(rest)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.sum, "max": self.max,
                "p50": self.percentile(50), "p90": self.percentile(90),
                "p99": self.percentile(99), "p999": self.percentile(99.9),
                "buckets": [list(b) for b in self.buckets()]}


@dataclass(frozen=True)
class FakeKindStats:
    dispatches: int
    errors: int
    wall_time: FakeHistogram
    loop_lag: FakeHistogram


@dataclass(frozen=True)
class FakeSlowCallback:
    kind: str
    name: str
    task_name: Optional[str]
    coroutine: Optional[str]
    location: str
    wall_time: float
    loop_lag: float
    started_at: float


@dataclass(frozen=True)
class FakeSnapshot:
    timestamp: float
    dispatches: int
    errors: int
    iterations: int
    busy_time: float
    idle_time: float
    utilization: float
    pending_handles: int
    pending_timers: int
    io_watchers: int
    open_transports: int
    wall_time: FakeHistogram
    loop_lag: FakeHistogram
    by_kind: dict[str, FakeKindStats]
    slow_callbacks: tuple[FakeSlowCallback, ...]
    slow_callbacks_total: int
    slow_callback_counts: dict[str, int]
    slow_callback_threshold: Optional[float]
    top_callbacks: tuple[Any, ...] = ()
    watchdog_reports: tuple[Any, ...] = ()
    watchdog_reports_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, FakeHistogram):
                value = value.to_dict()
            elif name == "by_kind":
                value = {k: {"dispatches": s.dispatches, "errors": s.errors,
                             "wall_time": s.wall_time.to_dict(),
                             "loop_lag": s.loop_lag.to_dict()} for k, s in value.items()}
            elif name == "slow_callbacks":
                value = [vars(r) for r in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


@dataclass
class _State:
    walls: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    slow: list[FakeSlowCallback] = field(default_factory=list)
    slow_counts: dict[str, int] = field(default_factory=dict)


class FakeMonitoredLoop(Loop):
    def __init__(self, monitor_callback: Any = None, *, slow_callback_threshold: Any = 0.1,
                 slow_callback_capacity: int = 256, **ignored: Any) -> None:
        super().__init__(self._record)
        self._user_monitor = monitor_callback
        self.slow_callback_threshold = slow_callback_threshold
        self._capacity = slow_callback_capacity
        self._state = _State()
        self._lock = threading.Lock()

    def _record(self, report: Any) -> None:
        wall, name = report.callback_wall_time, report.callback_pretty_name
        with self._lock:
            self._state.walls.append(wall)
            self._state.lags.append(report.loop_lag)
            threshold = self.slow_callback_threshold
            if threshold is not None and wall >= threshold:
                task, _, coro = name.partition(" (")
                record = FakeSlowCallback("callback", name, task if coro else None,
                                          coro.rstrip(")") or None, "", wall, report.loop_lag,
                                          self.time() - wall)
                self._state.slow = (self._state.slow + [record])[-self._capacity:]
                self._state.slow_counts[name] = self._state.slow_counts.get(name, 0) + 1
                slow_logger.warning(
                    "Slow callback %s took %.3f seconds at %s", name, wall, record.location,
                    extra={"callback_name": name, "task_name": record.task_name,
                           "coroutine": record.coroutine, "location": "", "wall_time": wall,
                           "loop_lag": report.loop_lag, "kind": "callback"})
        if self._user_monitor is not None:
            self._user_monitor(report)

    def monitor_snapshot(self) -> FakeSnapshot:
        with self._lock:
            s = self._state
            wall, lag = FakeHistogram(s.walls), FakeHistogram(s.lags)
            by_kind = {k: FakeKindStats(0, 0, FakeHistogram(), FakeHistogram()) for k in KINDS}
            by_kind["callback"] = FakeKindStats(len(s.walls), 0, wall, lag)
            return FakeSnapshot(
                timestamp=self.time(), dispatches=len(s.walls), errors=0, iterations=0,
                busy_time=wall.sum, idle_time=0.0, utilization=1.0 if s.walls else 0.0,
                pending_handles=self.pending_handles_count(), pending_timers=0, io_watchers=0,
                open_transports=0, wall_time=wall, loop_lag=lag, by_kind=by_kind,
                slow_callbacks=tuple(s.slow),
                slow_callbacks_total=sum(s.slow_counts.values()),
                slow_callback_counts=dict(s.slow_counts),
                slow_callback_threshold=self.slow_callback_threshold,
            )


def new_event_loop() -> Loop:
    """``monitored_uvloop.new_event_loop`` (on the fake until the core lands)."""
    if REAL:
        from monitored_ioloop.monitored_uvloop import new_event_loop as real

        return real()
    settings = config.from_env()
    loop = FakeMonitoredLoop(**settings.loop_options)
    config.apply_env(loop, settings)
    return loop


def loop_factory(**options: Any) -> Any:
    if REAL:
        from monitored_ioloop.monitored_uvloop import monitored_uvloop_loop_factory

        return monitored_uvloop_loop_factory(**options)
    return lambda: FakeMonitoredLoop(**options)
