"""OpenTelemetry metrics of the native loop printed by the SDK's console exporter: run it and a
JSON metrics document with ``monitored_ioloop.dispatches``, ``monitored_ioloop.utilization``
and the rest appears when the provider shuts down.

    python examples/otel_console.py
"""

from __future__ import annotations

import asyncio

from monitored_ioloop import otel
from monitored_ioloop.monitored_uvloop import run
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader


async def main() -> None:
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader])
    otel.register(provider)  # the running loop
    await asyncio.gather(*(asyncio.sleep(0.01) for _ in range(100)))
    provider.shutdown()  # exports once more, then stops


if __name__ == "__main__":
    run(main())
