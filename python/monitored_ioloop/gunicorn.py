"""A gunicorn worker class running uvicorn on the native loop (``pip install
monitored_ioloop[gunicorn]``):

    gunicorn app:app -k monitored_ioloop.gunicorn.MonitoredUvicornWorker -w 4

Loop options come from the ``MONITORED_IOLOOP_*`` environment variables, as with
``uvicorn --loop monitored_ioloop.monitored_uvloop:new_event_loop``.
"""

from __future__ import annotations

import warnings
from typing import Any

try:  # the maintained home of uvicorn's worker
    from uvicorn_worker import UvicornWorker  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    with warnings.catch_warnings():  # uvicorn.workers warns that it moved to uvicorn-worker
        warnings.simplefilter("ignore", DeprecationWarning)
        from uvicorn.workers import UvicornWorker

__all__ = ["MonitoredUvicornWorker"]

LOOP_FACTORY = "monitored_ioloop.monitored_uvloop:new_event_loop"


class MonitoredUvicornWorker(UvicornWorker):  # type: ignore[misc,unused-ignore]
    """uvicorn's gunicorn worker on ``monitored_uvloop.new_event_loop``."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": LOOP_FACTORY, "http": "auto"}
