"""OpenTelemetry: the observable instruments, read by the SDK's in-memory reader, report the
loop's snapshot values."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

from monitored_ioloop import otel  # noqa: E402
from monitored_ioloop.monitored_uvloop import monitored_uvloop_loop_factory  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

pytestmark = pytest.mark.timeout(30)


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = list(metric.data.data_points)
    return out


def test_in_memory_reader_sees_the_snapshot_values() -> None:
    loop = monitored_uvloop_loop_factory()()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        async def work() -> None:
            await asyncio.gather(*(asyncio.sleep(0.001) for _ in range(20)))

        loop.run_until_complete(work())
        instruments = otel.register(provider, loop, attributes={"service": "test"})
        seen = points(reader)
        snap = loop.monitor_snapshot()
    finally:
        provider.shutdown()
        loop.close()
    assert len(instruments) == len(seen)
    by_kind = {p.attributes["kind"]: p.value for p in seen["monitored_ioloop.dispatches"]}
    assert by_kind == {k: v.dispatches for k, v in snap.by_kind.items()}
    assert all(p.attributes["service"] == "test" for p in seen["monitored_ioloop.dispatches"])
    (busy,) = seen["monitored_ioloop.busy_time"]
    assert busy.value == pytest.approx(snap.busy_time)
    (pending,) = seen["monitored_ioloop.pending_handles"]
    assert pending.value == snap.pending_handles
    wall = {p.attributes["quantile"]: p.value for p in seen["monitored_ioloop.callback.wall_time"]}
    assert wall[0.5] == pytest.approx(snap.wall_time.percentile(50))
    assert wall[1.0] == pytest.approx(snap.wall_time.max)


def test_register_uses_the_running_loop() -> None:
    loop = monitored_uvloop_loop_factory()()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    async def main() -> None:
        otel.register(provider)

    try:
        loop.run_until_complete(main())
        seen = points(reader)
    finally:
        provider.shutdown()
        loop.close()
    assert sum(p.value for p in seen["monitored_ioloop.dispatches"]) > 0
