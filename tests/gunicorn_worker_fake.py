"""The gunicorn worker class the tests start: ours, on the stand-in loop until the monitoring
core lands (then ours as shipped)."""

from __future__ import annotations

from typing import Any

from monitored_ioloop.gunicorn import MonitoredUvicornWorker
from monitoring_fake import LOOP_FACTORY, REAL

WORKER_CLASS = (
    "monitored_ioloop.gunicorn.MonitoredUvicornWorker" if REAL
    else "gunicorn_worker_fake.Worker"
)


class Worker(MonitoredUvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {**MonitoredUvicornWorker.CONFIG_KWARGS, "loop": LOOP_FACTORY}
