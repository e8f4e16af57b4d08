"""OpenTelemetry metrics (``pip install monitored_ioloop[otel]``): observable instruments that
read the loop's monitoring snapshot whenever the MeterProvider collects, registered with one
call:

    from monitored_ioloop import otel
    otel.register(meter_provider)          # in a coroutine on the loop: the running loop

Counters (cumulative): ``monitored_ioloop.dispatches`` and ``monitored_ioloop.errors`` by
``kind``, ``monitored_ioloop.busy_time``/``idle_time`` (s), ``monitored_ioloop.iterations``,
``monitored_ioloop.slow_callbacks``, ``monitored_ioloop.watchdog.reports``. Gauges:
``monitored_ioloop.utilization``, ``monitored_ioloop.pending_handles``/``pending_timers``/
``io_watchers``/``open_transports``, and ``monitored_ioloop.callback.wall_time`` /
``monitored_ioloop.loop_lag`` (s) by ``quantile`` (0.5, 0.9, 0.99, 1 = max) since the start.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Optional

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from monitored_ioloop._loop_ref import SnapshotGetter, snapshot_getter
from monitored_ioloop._snapshot_types import HistogramLike, LoopSnapshotLike

__all__ = ["METER_NAME", "register"]

METER_NAME = "monitored_ioloop"

QUANTILES = (50.0, 90.0, 99.0)

_Callback = Callable[[CallbackOptions], Iterable[Observation]]


class _SharedSnapshot:
    """One snapshot per collection: every instrument's callback runs within a few
    milliseconds of the others, so they share the snapshot taken by the first."""

    def __init__(self, get: SnapshotGetter, max_age: float = 0.05) -> None:
        self._get = get
        self._max_age = max_age
        self._lock = threading.Lock()
        self._taken = -1e9
        self._snapshot: Optional[LoopSnapshotLike] = None

    def __call__(self) -> Optional[LoopSnapshotLike]:
        with self._lock:
            now = time.monotonic()
            if now - self._taken > self._max_age:
                self._snapshot, self._taken = self._get(), now
            return self._snapshot


def _scalar(
    shared: _SharedSnapshot, read: Callable[[LoopSnapshotLike], float], attributes: dict[str, Any]
) -> _Callback:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        s = shared()
        return [] if s is None else [Observation(read(s), attributes)]

    return observe


def _per_kind(
    shared: _SharedSnapshot, read: Callable[[Any], float], attributes: dict[str, Any]
) -> _Callback:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        s = shared()
        if s is None:
            return []
        return [Observation(read(k), {**attributes, "kind": kind}) for kind, k in s.by_kind.items()]

    return observe


def _quantiles(
    shared: _SharedSnapshot, read: Callable[[LoopSnapshotLike], HistogramLike],
    attributes: dict[str, Any],
) -> _Callback:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        s = shared()
        if s is None:
            return []
        hist = read(s)
        out = [
            Observation(hist.percentile(q), {**attributes, "quantile": q / 100})
            for q in QUANTILES
        ]
        out.append(Observation(hist.max, {**attributes, "quantile": 1.0}))
        return out

    return observe


def register(
    meter_provider: Optional[Any] = None,
    loop: Optional[Any] = None,
    *,
    attributes: Optional[dict[str, Any]] = None,
) -> list[Any]:
    """Creates the observable instruments for ``loop`` (default: the running loop) on
    ``meter_provider`` (default: the global one) and returns them. ``attributes`` are added to
    every observation (e.g. ``{"worker": 0}``)."""
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    meter = provider.get_meter(METER_NAME)
    shared = _SharedSnapshot(snapshot_getter(loop))
    attrs = dict(attributes or {})
    prefix = "monitored_ioloop."
    counters: list[tuple[str, str, str, _Callback]] = [
        ("dispatches", "{callback}", "Callbacks run, by kind.",
         _per_kind(shared, lambda k: k.dispatches, attrs)),
        ("errors", "{callback}", "Callbacks that raised, by kind.",
         _per_kind(shared, lambda k: k.errors, attrs)),
        ("iterations", "{iteration}", "Loop iterations.",
         _scalar(shared, lambda s: s.iterations, attrs)),
        ("busy_time", "s", "Seconds spent running callbacks.",
         _scalar(shared, lambda s: s.busy_time, attrs)),
        ("idle_time", "s", "Seconds blocked waiting for events.",
         _scalar(shared, lambda s: s.idle_time, attrs)),
        ("slow_callbacks", "{callback}", "Dispatches slower than the threshold.",
         _scalar(shared, lambda s: s.slow_callbacks_total, attrs)),
        ("watchdog.reports", "{report}", "Times the watchdog found the loop blocked.",
         _scalar(shared, lambda s: s.watchdog_reports_total, attrs)),
    ]
    gauges: list[tuple[str, str, str, _Callback]] = [
        ("utilization", "1", "busy / (busy + idle) since the loop started.",
         _scalar(shared, lambda s: s.utilization, attrs)),
        ("pending_handles", "{handle}", "Ready handles not yet run.",
         _scalar(shared, lambda s: s.pending_handles, attrs)),
        ("pending_timers", "{timer}", "Live timers.",
         _scalar(shared, lambda s: s.pending_timers, attrs)),
        ("io_watchers", "{descriptor}", "Descriptors watched.",
         _scalar(shared, lambda s: s.io_watchers, attrs)),
        ("open_transports", "{transport}", "Stream transports open.",
         _scalar(shared, lambda s: s.open_transports, attrs)),
        ("callback.wall_time", "s", "Callback wall time quantiles since the start.",
         _quantiles(shared, lambda s: s.wall_time, attrs)),
        ("loop_lag", "s", "Loop lag quantiles since the start.",
         _quantiles(shared, lambda s: s.loop_lag, attrs)),
    ]
    instruments: list[Any] = [
        meter.create_observable_counter(prefix + name, [callback], unit=unit, description=doc)
        for name, unit, doc, callback in counters
    ]
    instruments += [
        meter.create_observable_gauge(prefix + name, [callback], unit=unit, description=doc)
        for name, unit, doc, callback in gauges
    ]
    return instruments
