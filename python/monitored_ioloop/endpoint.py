"""A small HTTP endpoint, on a daemon thread, serving a loop's monitoring: the snapshot as JSON
at ``/monitored_ioloop.json`` (what ``python -m monitored_ioloop.top`` reads) and, when given a
Prometheus exposition function, ``/metrics``. Standard library only: the Prometheus side comes
from ``monitored_ioloop.prometheus``, which passes the function in."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

from monitored_ioloop._loop_ref import SnapshotGetter

__all__ = ["JSON_PATH", "METRICS_PATH", "MetricsRenderer", "MonitoringEndpoint"]

logger = logging.getLogger("monitored_ioloop.endpoint")

JSON_PATH = "/monitored_ioloop.json"
METRICS_PATH = "/metrics"

# Given the request's Accept header, the exposition body and its content type.
MetricsRenderer = Callable[[str], "tuple[bytes, str]"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == JSON_PATH:
                self._json()
            elif path == METRICS_PATH:
                self._metrics()
            elif path == "/":
                self._send(200, b"monitored_ioloop: /metrics, /monitored_ioloop.json\n",
                           "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
        except Exception:
            logger.exception("monitoring endpoint failed to answer %s", path)
            self._send(500, b"internal error\n", "text/plain; charset=utf-8")

    def _json(self) -> None:
        snapshot = self.server.endpoint.snapshot()
        if snapshot is None:
            self._send(503, b"the loop is gone\n", "text/plain; charset=utf-8")
            return
        body = json.dumps(snapshot.to_dict()).encode()
        self._send(200, body, "application/json")

    def _metrics(self) -> None:
        render = self.server.endpoint.metrics
        if render is None:
            self._send(501, b"prometheus_client is not installed\n", "text/plain; charset=utf-8")
            return
        body, content_type = render(self.headers.get("Accept", ""))
        self._send(200, body, content_type)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: MonitoringEndpoint


class MonitoringEndpoint:
    """Serves ``snapshot`` (re-read on every request; reassignable) on ``addr:port`` until
    :meth:`close`. ``port=0`` picks a free port: read it back from :attr:`port`."""

    def __init__(
        self,
        snapshot: SnapshotGetter,
        port: int,
        addr: str = "127.0.0.1",
        metrics: Optional[MetricsRenderer] = None,
    ) -> None:
        self.snapshot = snapshot
        self.metrics = metrics
        self._server = _Server((addr, port), _Handler)
        self._server.endpoint = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="monitored_ioloop-endpoint", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def addr(self) -> str:
        return str(self._server.server_address[0])

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}"

    def close(self) -> None:
        """Stops serving and releases the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
