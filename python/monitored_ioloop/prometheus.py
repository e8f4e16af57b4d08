"""Prometheus export (``pip install monitored_ioloop[prometheus]``): a prometheus_client custom
collector that reads the loop's monitoring snapshot at scrape time (no background thread, no
second bookkeeping), and an HTTP endpoint serving ``/metrics`` plus the snapshot as JSON.

    from monitored_ioloop import prometheus
    prometheus.register()                      # in a coroutine on the loop: the running loop
    prometheus.start_http_server(9464)         # or serve it yourself

Every metric is described in the README's "Prometheus metrics" table. Histograms map the native
log-linear buckets (1.6 % relative error) onto Prometheus ``le`` bounds with
``Histogram.cumulative_count``; ``_sum`` and ``_count`` are exact.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping, Optional, Sequence

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from monitored_ioloop._loop_ref import SnapshotGetter, snapshot_getter
from monitored_ioloop._snapshot_types import HistogramLike, LoopSnapshotLike
from monitored_ioloop.endpoint import MonitoringEndpoint

__all__ = [
    "DEFAULT_BUCKETS",
    "LoopCollector",
    "bounded_callback_name",
    "innermost_location",
    "metrics_renderer",
    "register",
    "start_http_server",
]

PREFIX = "monitored_ioloop_"

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

OTHER_CALLBACKS = "(other)"

# A formatted stack's frame line: '  File "/srv/app.py", line 31, in report'.
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')

# "Task-123 (handler)" -> "Task-_ (handler)": unnamed tasks are numbered per task, which would
# make one label value per request.
_TASK_NUMBER = re.compile(r"\bTask-\d+\b")


def innermost_location(stack: str) -> str:
    """``file:line`` of the innermost frame of a formatted stack (innermost last), or ``""``."""
    frames = _FRAME.findall(stack)
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else ""


def bounded_callback_name(name: str) -> str:
    """A callback's pretty name with asyncio's per-task numbers masked, fit for a label."""
    return _TASK_NUMBER.sub("Task-_", name)


class LoopCollector(Collector):
    """Reads one loop's snapshot on every ``collect()``.

    ``labels`` are added to every sample (e.g. ``{"worker": "0"}``); ``max_callback_names``
    bounds the ``callback`` label: the most frequent names are kept, the rest are summed under
    ``"(other)"``."""

    def __init__(
        self,
        snapshot: SnapshotGetter,
        *,
        labels: Optional[Mapping[str, str]] = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        max_callback_names: int = 50,
    ) -> None:
        self._snapshot = snapshot
        self._label_names = list(labels or {})
        self._label_values = [str(v) for v in (labels or {}).values()]
        bounds = sorted(float(b) for b in buckets if b != float("inf"))
        self._buckets = [(le, str(floatToGoString(le))) for le in bounds]  # type: ignore[no-untyped-call]
        self._max_names = max_callback_names

    def describe(self) -> Iterator[Metric]:
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        if snapshot is None:
            return iter(())
        return self._families(snapshot)

    # -- building the families -----------------------------------------------------------------

    def _counter(self, name: str, doc: str, extra: Sequence[str] = ()) -> CounterMetricFamily:
        return CounterMetricFamily(PREFIX + name, doc, labels=self._label_names + list(extra))

    def _gauge(self, name: str, doc: str, extra: Sequence[str] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(PREFIX + name, doc, labels=self._label_names + list(extra))

    def _histogram(self, name: str, doc: str, hist: Optional[HistogramLike]) -> Metric:
        family = HistogramMetricFamily(PREFIX + name, doc, labels=self._label_names)
        if hist is not None:
            buckets: list[tuple[str, float]] = [
                (label, hist.cumulative_count(le)) for le, label in self._buckets
            ]
            buckets.append(("+Inf", hist.count))
            family.add_metric(self._label_values, buckets, hist.sum)
        return family

    def _families(self, s: Optional[LoopSnapshotLike]) -> Iterator[Metric]:
        values = self._label_values
        yield self._histogram(
            "callback_wall_time_seconds",
            "Wall time of each callback the loop ran (a task step, a timer, an I/O callback).",
            s.wall_time if s else None,
        )
        yield self._histogram(
            "loop_lag_seconds",
            "Delay from when a callback could have run (scheduled, or its timer due) to its start.",
            s.loop_lag if s else None,
        )
        dispatches = self._counter("dispatches", "Callbacks run, by kind.", ["kind"])
        errors = self._counter("callback_errors", "Callbacks that raised, by kind.", ["kind"])
        if s:
            for kind, stats in sorted(s.by_kind.items()):
                dispatches.add_metric(values + [kind], stats.dispatches)
                errors.add_metric(values + [kind], stats.errors)
        yield dispatches
        yield errors
        scalars: list[tuple[str, str, Any]] = [
            ("iterations", "Loop iterations.", s.iterations if s else None),
            ("busy_seconds", "Seconds spent running callbacks.", s.busy_time if s else None),
            ("idle_seconds", "Seconds blocked waiting for events.", s.idle_time if s else None),
        ]
        for name, doc, value in scalars:
            family = self._counter(name, doc)
            if value is not None:
                family.add_metric(values, value)
            yield family
        gauges: list[tuple[str, str, Any]] = [
            ("utilization_ratio", "busy / (busy + idle) since the loop started, 0..1.",
             s.utilization if s else None),
            ("pending_handles", "Ready handles not yet run.", s.pending_handles if s else None),
            ("pending_timers", "Live (not cancelled) timers.", s.pending_timers if s else None),
            ("io_watchers", "Descriptors watched for reading or writing.",
             s.io_watchers if s else None),
            ("open_transports", "Stream transports open on the loop.",
             s.open_transports if s else None),
            ("slow_callback_threshold_seconds",
             "Wall time over which a callback is recorded as slow (absent when off).",
             s.slow_callback_threshold if s else None),
        ]
        for name, doc, value in gauges:
            gauge = self._gauge(name, doc)
            if value is not None:
                gauge.add_metric(values, value)
            yield gauge
        yield from self._slow_callbacks(s)
        yield from self._watchdog(s)

    def _slow_callbacks(self, s: Optional[LoopSnapshotLike]) -> Iterator[Metric]:
        values = self._label_values
        total = self._counter("slow_callbacks", "Dispatches that took longer than the threshold.")
        by_name = self._counter(
            "slow_callbacks_by_name",
            "Slow dispatches per callback name (task numbers masked; rare names as '(other)').",
            ["callback"],
        )
        last = self._gauge(
            "slow_callback_last_seconds",
            "Wall time of the latest slow dispatch still in the record ring, per callback name "
            "and location (file:line, or file:first-last line of a task step).",
            ["callback", "location"],
        )
        if s:
            total.add_metric(values, s.slow_callbacks_total)
            counts: dict[str, int] = {}
            for name, count in s.slow_callback_counts.items():
                key = bounded_callback_name(name)
                counts[key] = counts.get(key, 0) + count
            kept = sorted(counts, key=lambda n: (-counts[n], n))
            other = sum(counts[n] for n in kept[self._max_names:])
            for name in kept[: self._max_names]:
                by_name.add_metric(values + [name], counts[name])
            if other:
                by_name.add_metric(values + [OTHER_CALLBACKS], other)
            latest: dict[tuple[str, str], float] = {}
            for record in s.slow_callbacks:  # oldest first: later records win
                latest[(bounded_callback_name(record.name), record.location)] = record.wall_time
            for (name, location), wall in list(latest.items())[-self._max_names:]:
                last.add_metric(values + [name, location], wall)
        yield total
        yield by_name
        yield last

    def _watchdog(self, s: Optional[LoopSnapshotLike]) -> Iterator[Metric]:
        reports = self._counter(
            "watchdog_reports", "Times the watchdog found the loop blocked past its threshold."
        )
        last = self._gauge(
            "watchdog_last_blocked_seconds",
            "How long the loop had been blocked at the latest watchdog report.",
        )
        blocked = self._gauge(
            "watchdog_blocked_seconds",
            "Longest time blocked among the watchdog reports still kept, per callback name and "
            "the innermost frame (file:line) of the loop thread's stack when reported.",
            ["callback", "location"],
        )
        if s:
            reports.add_metric(self._label_values, s.watchdog_reports_total)
            if s.watchdog_reports:
                last.add_metric(self._label_values, s.watchdog_reports[-1].blocked_for)
            longest: dict[tuple[str, str], float] = {}
            for report in s.watchdog_reports:
                key = (bounded_callback_name(report.name), innermost_location(report.stack))
                longest[key] = max(longest.get(key, 0.0), report.blocked_for)
            for (name, location), seconds in list(longest.items())[-self._max_names:]:
                blocked.add_metric(self._label_values + [name, location], seconds)
        yield reports
        yield last
        yield blocked


def register(
    registry: Optional[CollectorRegistry] = None,
    loop: Optional[Any] = None,
    *,
    labels: Optional[Mapping[str, str]] = None,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
) -> LoopCollector:
    """Registers a :class:`LoopCollector` for ``loop`` (default: the running loop) on
    ``registry`` (default: prometheus_client's global ``REGISTRY``) and returns it
    (``registry.unregister(collector)`` removes it)."""
    collector = LoopCollector(snapshot_getter(loop), labels=labels, buckets=buckets)
    (REGISTRY if registry is None else registry).register(collector)
    return collector


def metrics_renderer(registry: CollectorRegistry) -> Any:
    """The exposition of ``registry`` for a request's Accept header: (body, content type)."""

    def render(accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type

    return render


def start_http_server(
    port: int,
    addr: str = "127.0.0.1",
    *,
    loop: Optional[Any] = None,
    registry: Optional[CollectorRegistry] = None,
    labels: Optional[Mapping[str, str]] = None,
) -> MonitoringEndpoint:
    """Serves ``/metrics`` and ``/monitored_ioloop.json`` (the snapshot of ``loop``, default the
    running one) on ``addr:port`` from a daemon thread; ``.close()`` stops it.

    ``/metrics`` serves ``registry`` if given (register the loop on it yourself, e.g. with
    :func:`register`, to serve it along with your own metrics); by default a registry holding
    only this loop's collector."""
    snapshot = snapshot_getter(loop)
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
        registry.register(LoopCollector(snapshot, labels=labels))
    return MonitoringEndpoint(snapshot, port, addr, metrics_renderer(registry))
