"""What the loop tells about itself.

- :class:`IoLoopMonitorState`: what a monitor callback receives, one per dispatch (native,
  built only for dispatches the callback is called for; names computed only when read). It is
  dataclass-compatible, with the original package's four fields first.
- :class:`LoopSnapshot`: the native aggregates, read when asked (``loop.monitor_snapshot()`` or
  :func:`snapshot`): counts and log-linear histograms of wall time and loop lag by kind of
  dispatch, utilisation, pending work, slow callbacks (with the ``file:line`` span they ran),
  busy time per callable, watchdog reports. ``later.since(earlier)`` gives the window between
  two snapshots, as Node's ``eventLoopUtilization(previous)`` does.

Histograms have 32 log-linear sub-buckets per power of two from 1 ns to about 18 minutes: a
percentile is reported as its bucket's midpoint, within 1.6 % of the true value (clamped to the
exact ``min``/``max``).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import itertools
import math
from array import array
from collections.abc import Mapping
from types import CodeType
from typing import Any, Callable, Optional

from monitored_ioloop._native import HISTOGRAM_SUB_BITS, IoLoopMonitorState

__all__ = [
    "KINDS",
    "Histogram",
    "IoLoopMonitorState",
    "KindStats",
    "LoopSnapshot",
    "MonitorCallback",
    "SlowCallback",
    "TopCallback",
    "WatchdogReport",
    "snapshot",
]

MonitorCallback = Callable[[IoLoopMonitorState], None]

#: What made a callback runnable: ``call_soon`` (and all asyncio schedules through it), a timer,
#: a descriptor's readiness, ``call_soon_threadsafe``, a signal handler.
KINDS = ("callback", "timer", "io", "threadsafe", "signal")


@dataclasses.dataclass
class _Fields:
    callback_wall_time: float
    callback_pretty_name: str
    loop_handles_count: int
    loop_lag: float
    kind: str = "callback"
    task_name: Optional[str] = None
    started_at: float = 0.0


IoLoopMonitorState.__dataclass_fields__ = _Fields.__dataclass_fields__  # type: ignore[attr-defined]
IoLoopMonitorState.__dataclass_params__ = _Fields.__dataclass_params__  # type: ignore[attr-defined]

# -- histograms -------------------------------------------------------------------------------

_SUB = 1 << HISTOGRAM_SUB_BITS


def _lower_ns(index: int) -> int:
    """The smallest value (ns) of native bucket ``index`` (mirrors src/monitoring/histogram.rs)."""
    if index < _SUB:
        return index
    shift = (index >> HISTOGRAM_SUB_BITS) - 1
    return (_SUB + (index & (_SUB - 1))) << shift


class Histogram:
    """A distribution of durations in seconds (immutable). ``percentile(q)`` is computed when
    called; ``buckets()`` gives the native buckets as ``(upper_bound_seconds, cumulative_count)``.
    """

    __slots__ = ("count", "sum", "max", "min", "_counts", "_cumulative")

    def __init__(self, count: int, sum: float, max: float, min: float, counts: array[int]) -> None:
        self.count = count
        self.sum = sum
        self.max = max
        self.min = min
        self._counts = counts
        self._cumulative: Optional[list[int]] = None

    def _running_totals(self) -> list[int]:
        if self._cumulative is None:
            self._cumulative = list(itertools.accumulate(self._counts))
        return self._cumulative

    @classmethod
    def _from_raw(cls, raw: tuple[int, int, int, int, bytes]) -> Histogram:
        count, sum_ns, max_ns, min_ns, data = raw
        counts = array("Q")
        counts.frombytes(data)
        return cls(count, sum_ns * 1e-9, max_ns * 1e-9, min_ns * 1e-9, counts)

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """The value (seconds) below which ``q`` percent of the recorded values lie."""
        if not isinstance(q, (int, float)) or isinstance(q, bool):
            raise TypeError(f"q must be a number from 0 to 100, not {type(q).__name__}")
        if not 0 <= q <= 100:
            raise ValueError(f"q must be from 0 to 100, got {q}")
        if self.count == 0:
            return 0.0
        if q == 0:
            return self.min
        if q == 100:
            return self.max
        rank = max(1, math.ceil(q / 100 * self.count))
        totals = self._running_totals()
        index = bisect.bisect_left(totals, rank)
        if index >= len(totals):
            return self.max
        lower, upper = _lower_ns(index), _lower_ns(index + 1)
        value = lower if upper - lower == 1 else (lower + upper) / 2
        return min(max(value * 1e-9, self.min), self.max)

    def buckets(self) -> list[tuple[float, int]]:
        """``(upper_bound_seconds, cumulative_count)`` for each native bucket up to the last
        non-empty one; every value counted is below its bucket's upper bound."""
        return [
            (_lower_ns(index + 1) * 1e-9, seen)
            for index, seen in enumerate(self._running_totals())
        ]

    def cumulative_count(self, upper_bound: float) -> int:
        """How many values are at most ``upper_bound`` seconds: the native buckets that lie
        wholly at or below it (exact at native bounds; conservative between them)."""
        limit_ns = upper_bound * 1e9
        totals = self._running_totals()
        seen = 0
        for index, total in enumerate(totals):
            if _lower_ns(index + 1) - 1 > limit_ns:
                break
            seen = total
        return seen

    def since(self, previous: Histogram) -> Histogram:
        """The values recorded after ``previous`` was read. ``max``/``min`` of the window are
        bounded by the buckets its values fell in (and by the newer exact figures)."""
        counts = array("Q", self._counts)
        for i, c in enumerate(previous._counts):
            counts[i] -= min(c, counts[i])
        count = self.count - previous.count
        if count <= 0:
            return Histogram(0, 0.0, 0.0, 0.0, array("Q"))
        used = [i for i, c in enumerate(counts) if c]
        low = _lower_ns(used[0]) * 1e-9 if used else 0.0
        high = _lower_ns(used[-1] + 1) * 1e-9 if used else 0.0
        return Histogram(
            count,
            self.sum - previous.sum,
            min(self.max, high),
            max(self.min, low),
            counts,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "p999": self.percentile(99.9),
            # Only the buckets values fell in: cumulative counts, so nothing is lost.
            "buckets": [
                [upper, cumulative]
                for (upper, cumulative), n in zip(self.buckets(), self._counts)
                if n
            ],
        }

    def __repr__(self) -> str:
        return (
            f"Histogram(count={self.count}, mean={self.mean:.6f}, p50={self.percentile(50):.6f},"
            f" p99={self.percentile(99):.6f}, max={self.max:.6f})"
        )


# -- records ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KindStats:
    """Dispatches of one kind."""

    dispatches: int
    errors: int
    wall_time: Histogram
    loop_lag: Histogram

    def since(self, previous: KindStats) -> KindStats:
        return KindStats(
            self.dispatches - previous.dispatches,
            self.errors - previous.errors,
            self.wall_time.since(previous.wall_time),
            self.loop_lag.since(previous.loop_lag),
        )


@dataclasses.dataclass(frozen=True)
class SlowCallback:
    """A dispatch that took at least ``slow_callback_threshold``.

    ``location`` is ``file:first-last`` for a task step (from the line the coroutine resumed
    from, or its definition when that was not noted, to the line it suspended at or finished
    on: the slow code lies between them), ``file:line`` of a plain callback's definition, or
    ``""`` for callables without Python code.
    """

    kind: str
    name: str
    task_name: Optional[str]
    coroutine: Optional[str]
    location: str
    wall_time: float
    loop_lag: float
    started_at: float


@dataclasses.dataclass(frozen=True)
class TopCallback:
    """Busy time of one callable (a function, a method, or a coroutine for task steps)."""

    name: str
    location: str
    count: int
    busy_time: float
    max_wall_time: float


@dataclasses.dataclass(frozen=True)
class WatchdogReport:
    """A dispatch that held the loop past ``watchdog_threshold``, seen while it still ran.

    ``stack`` is the loop thread's Python stack at that moment (innermost last);
    ``gil_unavailable`` says the loop thread held the GIL in native code so the stack could not
    be taken; ``wall_time`` is filled in once the dispatch finished.
    """

    started_at: float
    blocked_for: float
    thread_id: int
    stack: str
    gil_unavailable: bool
    name: str
    wall_time: Optional[float] = None


def _name_of(namer: Any) -> tuple[str, str]:
    if isinstance(namer, tuple):  # (qualified name, code) where code has no co_qualname
        name, code = namer
        return str(name), f"{code.co_filename}:{code.co_firstlineno}"
    if isinstance(namer, CodeType):
        name = getattr(namer, "co_qualname", namer.co_name)
        return name, f"{namer.co_filename}:{namer.co_firstlineno}"
    return str(namer), ""


# -- snapshots --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoopSnapshot:
    """The loop's figures at one moment (totals since the loop was created; see ``since``)."""

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
    wall_time: Histogram
    loop_lag: Histogram
    by_kind: Mapping[str, KindStats]
    slow_callbacks: tuple[SlowCallback, ...]
    slow_callbacks_total: int
    slow_callback_counts: Mapping[str, int]
    slow_callback_threshold: Optional[float]
    top_callbacks: tuple[TopCallback, ...]
    watchdog_reports: tuple[WatchdogReport, ...] = ()
    watchdog_reports_total: int = 0

    @classmethod
    def _from_raw(
        cls,
        raw: Mapping[str, Any],
        watchdog_reports: tuple[WatchdogReport, ...] = (),
        watchdog_reports_total: int = 0,
    ) -> LoopSnapshot:
        by_kind = {
            name: KindStats(d, e, Histogram._from_raw(w), Histogram._from_raw(lag))
            for name, d, e, w, lag in raw["kinds"]
        }
        wall = Histogram._from_raw(raw["wall"])
        top = []
        for namer, count, busy_ns, max_ns in raw["top"]:
            name, location = _name_of(namer)
            top.append(TopCallback(name, location, count, busy_ns * 1e-9, max_ns * 1e-9))
        top.sort(key=lambda t: t.busy_time, reverse=True)
        idle = raw["idle_ns"] * 1e-9
        return cls(
            timestamp=raw["timestamp"],
            dispatches=sum(k.dispatches for k in by_kind.values()),
            errors=sum(k.errors for k in by_kind.values()),
            iterations=raw["iterations"],
            busy_time=wall.sum,
            idle_time=idle,
            utilization=_utilization(wall.sum, idle),
            pending_handles=raw["pending_handles"],
            pending_timers=raw["pending_timers"],
            io_watchers=raw["io_watchers"],
            open_transports=raw["open_transports"],
            wall_time=wall,
            loop_lag=Histogram._from_raw(raw["lag"]),
            by_kind=by_kind,
            slow_callbacks=tuple(raw["slow"]),
            slow_callbacks_total=raw["slow_total"],
            slow_callback_counts=dict(raw["slow_counts"]),
            slow_callback_threshold=raw["slow_threshold"],
            top_callbacks=tuple(top),
            watchdog_reports=watchdog_reports,
            watchdog_reports_total=watchdog_reports_total,
        )

    def since(self, previous: LoopSnapshot) -> LoopSnapshot:
        """The window from ``previous`` to this snapshot: counts, times, histograms and busy time
        per callable are deltas, utilisation is over the window; gauges (pending work) and the
        rings (slow callbacks, watchdog reports: only those that started in the window) are this
        snapshot's."""
        if not isinstance(previous, LoopSnapshot):
            raise TypeError(f"previous must be a LoopSnapshot, not {type(previous).__name__}")
        if previous.timestamp > self.timestamp:
            raise ValueError("previous was taken after this snapshot")
        busy = self.busy_time - previous.busy_time
        idle = self.idle_time - previous.idle_time
        earlier = {(t.name, t.location): t for t in previous.top_callbacks}
        top = []
        for t in self.top_callbacks:
            before = earlier.get((t.name, t.location))
            if before is None:
                top.append(t)
            elif t.count > before.count:
                top.append(
                    TopCallback(
                        t.name,
                        t.location,
                        t.count - before.count,
                        t.busy_time - before.busy_time,
                        t.max_wall_time,
                    )
                )
        top.sort(key=lambda t: t.busy_time, reverse=True)
        slow_counts = {
            name: count - previous.slow_callback_counts.get(name, 0)
            for name, count in self.slow_callback_counts.items()
            if count > previous.slow_callback_counts.get(name, 0)
        }
        return dataclasses.replace(
            self,
            dispatches=self.dispatches - previous.dispatches,
            errors=self.errors - previous.errors,
            iterations=self.iterations - previous.iterations,
            busy_time=busy,
            idle_time=idle,
            utilization=_utilization(busy, idle),
            wall_time=self.wall_time.since(previous.wall_time),
            loop_lag=self.loop_lag.since(previous.loop_lag),
            by_kind={
                name: k.since(previous.by_kind[name]) if name in previous.by_kind else k
                for name, k in self.by_kind.items()
            },
            slow_callbacks=tuple(
                s for s in self.slow_callbacks if s.started_at >= previous.timestamp
            ),
            slow_callbacks_total=self.slow_callbacks_total - previous.slow_callbacks_total,
            slow_callback_counts=slow_counts,
            top_callbacks=tuple(top),
            watchdog_reports=tuple(
                w for w in self.watchdog_reports if w.started_at >= previous.timestamp
            ),
            watchdog_reports_total=self.watchdog_reports_total - previous.watchdog_reports_total,
        )

    def to_dict(self, top: int = 20) -> dict[str, Any]:
        """A JSON-serialisable form (what a JSON endpoint serves); ``top`` limits the busiest
        callables listed."""
        return {
            "timestamp": self.timestamp,
            "dispatches": self.dispatches,
            "errors": self.errors,
            "iterations": self.iterations,
            "busy_time": self.busy_time,
            "idle_time": self.idle_time,
            "utilization": self.utilization,
            "pending_handles": self.pending_handles,
            "pending_timers": self.pending_timers,
            "io_watchers": self.io_watchers,
            "open_transports": self.open_transports,
            "wall_time": self.wall_time.to_dict(),
            "loop_lag": self.loop_lag.to_dict(),
            "by_kind": {
                name: {
                    "dispatches": k.dispatches,
                    "errors": k.errors,
                    "wall_time": k.wall_time.to_dict(),
                    "loop_lag": k.loop_lag.to_dict(),
                }
                for name, k in self.by_kind.items()
            },
            "slow_callbacks": [dataclasses.asdict(s) for s in self.slow_callbacks],
            "slow_callbacks_total": self.slow_callbacks_total,
            "slow_callback_counts": dict(self.slow_callback_counts),
            "slow_callback_threshold": self.slow_callback_threshold,
            "top_callbacks": [dataclasses.asdict(t) for t in self.top_callbacks[:top]],
            "watchdog_reports": [dataclasses.asdict(w) for w in self.watchdog_reports],
            "watchdog_reports_total": self.watchdog_reports_total,
        }


def _utilization(busy: float, idle: float) -> float:
    total = busy + idle
    return min(1.0, max(0.0, busy / total)) if total > 0 else 0.0


def snapshot(loop: Optional[asyncio.AbstractEventLoop] = None) -> LoopSnapshot:
    """``loop.monitor_snapshot()`` for ``loop``, or for the running loop when None."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("no running event loop: pass the loop to snapshot()") from None
    take = getattr(loop, "monitor_snapshot", None)
    if take is None:
        raise TypeError(
            f"{type(loop).__name__} keeps no native figures: use monitored_ioloop's loop"
        )
    result = take()
    assert isinstance(result, LoopSnapshot)
    return result


# The original package's Python-side wrapper names, still importable from here.
from monitored_ioloop._legacy_monitoring import (  # noqa: E402
    IoLoopInnerState,
    MonitoredCallbackWrapper,
    wrap_callback_with_monitoring,
)

__all__ += ["IoLoopInnerState", "MonitoredCallbackWrapper", "wrap_callback_with_monitoring"]
