"""Loop options from ``MONITORED_IOLOOP_*`` environment variables, for servers whose
``--loop`` takes a factory and no arguments (uvicorn's
``--loop monitored_ioloop.monitored_uvloop:new_event_loop``, the gunicorn worker).
``monitored_uvloop.new_event_loop()`` reads them; the README's "Environment variables" table
lists them. A malformed value raises one ``ValueError`` naming the variable, before any loop
is made.

The one piece of process state here is the monitoring endpoint that
``MONITORED_IOLOOP_PROMETHEUS_PORT`` starts: one per process (per worker), serving the loop
that process made last.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional

from monitored_ioloop._loop_ref import snapshot_getter

if TYPE_CHECKING:
    from monitored_ioloop.endpoint import MonitoringEndpoint

__all__ = ["EnvSettings", "apply_env", "close_endpoint", "from_env", "endpoint"]

logger = logging.getLogger("monitored_ioloop.config")

SLOW_CALLBACK = "MONITORED_IOLOOP_SLOW_CALLBACK"
SLOW_CALLBACK_CAPACITY = "MONITORED_IOLOOP_SLOW_CALLBACK_CAPACITY"
WATCHDOG = "MONITORED_IOLOOP_WATCHDOG"
PROMETHEUS_PORT = "MONITORED_IOLOOP_PROMETHEUS_PORT"
PROMETHEUS_ADDR = "MONITORED_IOLOOP_PROMETHEUS_ADDR"
PROMETHEUS_WORKERS = "MONITORED_IOLOOP_PROMETHEUS_WORKERS"
LOG_FORMAT = "MONITORED_IOLOOP_LOG_FORMAT"

_OFF = ("off", "none", "false", "no")


@dataclass(frozen=True)
class EnvSettings:
    """What the environment asks for: loop constructor keywords, and the endpoint to start."""

    loop_options: dict[str, Any] = field(default_factory=dict)
    prometheus_port: Optional[int] = None
    prometheus_addr: str = "127.0.0.1"
    prometheus_workers: int = 64
    log_format: Optional[str] = None


def _seconds(name: str, raw: str, allow_off: bool) -> Optional[float]:
    text = raw.strip().lower()
    if allow_off and text in _OFF:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        expected = "a positive number of seconds" + (" or 'off'" if allow_off else "")
        raise ValueError(f"{name}={raw!r}: expected {expected}, e.g. {name}=0.1")
    return value


def _integer(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ValueError(f"{name}={raw!r}: expected a whole number from {low} to {high}")
    return value


def from_env(environ: Optional[Mapping[str, str]] = None) -> EnvSettings:
    """Reads the ``MONITORED_IOLOOP_*`` variables (unset or empty: the default)."""
    env = os.environ if environ is None else environ

    def get(name: str) -> Optional[str]:
        value = env.get(name, "")
        return value if value.strip() else None

    options: dict[str, Any] = {}
    if (raw := get(SLOW_CALLBACK)) is not None:
        options["slow_callback_threshold"] = _seconds(SLOW_CALLBACK, raw, allow_off=True)
    if (raw := get(SLOW_CALLBACK_CAPACITY)) is not None:
        options["slow_callback_capacity"] = _integer(SLOW_CALLBACK_CAPACITY, raw, 1, 1 << 20)
    if (raw := get(WATCHDOG)) is not None:
        options["watchdog_threshold"] = _seconds(WATCHDOG, raw, allow_off=True)
    port = get(PROMETHEUS_PORT)
    workers = get(PROMETHEUS_WORKERS)
    log_format = get(LOG_FORMAT)
    if log_format is not None and log_format.strip().lower() not in ("json", "text"):
        raise ValueError(f"{LOG_FORMAT}={log_format!r}: expected 'json' or 'text'")
    return EnvSettings(
        loop_options=options,
        prometheus_port=None if port is None else _integer(PROMETHEUS_PORT, port, 0, 65535),
        prometheus_addr=(get(PROMETHEUS_ADDR) or "127.0.0.1").strip(),
        prometheus_workers=(
            64 if workers is None else _integer(PROMETHEUS_WORKERS, workers, 1, 1024)
        ),
        log_format=None if log_format is None else log_format.strip().lower(),
    )


class _ProcessEndpoint:
    """The endpoint this process started from the environment, with the pid that started it
    (a forked child starts its own)."""

    endpoint: Optional[MonitoringEndpoint] = None
    pid: int = 0
    worker: int = 0


def apply_env(loop: Any, settings: EnvSettings) -> None:
    """What the environment asks for beyond constructor keywords: the log format, and the
    monitoring endpoint (moved to ``loop`` if this process already serves one)."""
    if settings.log_format is not None:
        _configure_logging(settings.log_format)
    if settings.prometheus_port is None:
        return
    current = _ProcessEndpoint
    if current.endpoint is not None and current.pid == os.getpid():
        current.endpoint.snapshot = snapshot_getter(loop)
        return
    endpoint = _start_worker_endpoint(loop, settings)
    if endpoint is not None:
        current.endpoint, current.pid = endpoint, os.getpid()


def endpoint() -> Optional[MonitoringEndpoint]:
    """The endpoint ``MONITORED_IOLOOP_PROMETHEUS_PORT`` started in this process, if any."""
    current = _ProcessEndpoint
    return current.endpoint if current.pid == os.getpid() else None


def close_endpoint() -> None:
    """Stops this process's environment-started endpoint (the next loop starts a new one)."""
    current = _ProcessEndpoint
    if current.endpoint is not None and current.pid == os.getpid():
        current.endpoint.close()
    current.endpoint, current.pid = None, 0


def _start_worker_endpoint(loop: Any, settings: EnvSettings) -> Optional[MonitoringEndpoint]:
    """Binds the first free port of ``port .. port + workers - 1``: with N workers, worker i
    (in start order) serves on port + i, its samples labelled ``worker="i"`` and its pid."""
    from monitored_ioloop.endpoint import MonitoringEndpoint

    assert settings.prometheus_port is not None
    tries = 1 if settings.prometheus_port == 0 else settings.prometheus_workers
    for index in range(tries):
        port = settings.prometheus_port + index if settings.prometheus_port else 0
        try:
            endpoint = MonitoringEndpoint(snapshot_getter(loop), port, settings.prometheus_addr)
        except OSError:
            continue
        endpoint.metrics = _metrics_for(endpoint, {"worker": str(index), "pid": str(os.getpid())})
        logger.info(
            "monitoring endpoint of worker %d (pid %d): http://%s:%d/metrics",
            index, os.getpid(), settings.prometheus_addr, endpoint.port,
            extra={"worker": index, "port": endpoint.port},
        )
        return endpoint
    logger.error(
        "%s=%d: no free port among the %d from it; this worker serves no metrics",
        PROMETHEUS_PORT, settings.prometheus_port, tries,
    )
    return None


def _metrics_for(endpoint: MonitoringEndpoint, labels: dict[str, str]) -> Any:
    """A Prometheus renderer reading whichever loop the endpoint serves, or None without
    prometheus_client (the JSON endpoint still works)."""
    try:
        from prometheus_client import CollectorRegistry

        from monitored_ioloop.prometheus import LoopCollector, metrics_renderer
    except ImportError:
        logger.warning("prometheus_client is not installed: /metrics answers 501")
        return None
    registry = CollectorRegistry(auto_describe=True)
    registry.register(LoopCollector(lambda: endpoint.snapshot(), labels=labels))
    return metrics_renderer(registry)


def _configure_logging(log_format: str) -> None:
    """A stderr handler on the ``monitored_ioloop`` logger (once per process), JSON lines or
    plain text, so that slow-callback and watchdog records show under servers that configure
    only their own loggers."""
    from monitored_ioloop.log_format import JsonFormatter

    parent = logging.getLogger("monitored_ioloop")
    if any(getattr(h, "_monitored_ioloop_env", False) for h in parent.handlers):
        return
    handler = logging.StreamHandler()
    handler._monitored_ioloop_env = True  # type: ignore[attr-defined]
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    parent.addHandler(handler)
    if parent.level == logging.NOTSET:
        parent.setLevel(logging.INFO)
    parent.propagate = False
