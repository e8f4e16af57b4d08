"""Structured logging for the loop's records: slow callbacks (logger
``monitored_ioloop.slow_callbacks``) and watchdog reports (``monitored_ioloop.watchdog``) carry
their fields in ``extra=``; :class:`JsonFormatter` writes each record as one JSON line with
those fields, for log pipelines that index JSON.

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("monitored_ioloop").addHandler(handler)
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

__all__ = ["RECORD_FIELDS", "JsonFormatter", "record_fields"]

# The ``extra=`` fields the loop's records may carry (monitoring contract).
RECORD_FIELDS = (
    "callback_name",
    "task_name",
    "coroutine",
    "location",
    "wall_time",
    "loop_lag",
    "kind",
    "blocked_for",
    "thread_id",
    "stack",
    "gil_unavailable",
)

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record (the loop's and any other)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, every ``extra=`` field, and ``exc_info`` formatted when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(record_fields(record))
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=repr)
