"""A FastAPI-free ASGI app served by uvicorn on the native loop, with every callback that takes
over 20 ms logged.

    uvicorn examples.uvicorn_app:app --loop examples.uvicorn_app:monitored_loop
    curl localhost:8000/
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable

from monitored_ioloop.monitored_uvloop import MonitoredUvloopEventLoop
from monitored_ioloop.monitoring import IoLoopMonitorState

logger = logging.getLogger("loop-monitor")


def log_slow(state: IoLoopMonitorState) -> None:
    if state.callback_wall_time > 0.02:
        milliseconds = state.callback_wall_time * 1e3
        logger.warning("%s took %.1f ms", state.callback_pretty_name, milliseconds)


def monitored_loop() -> MonitoredUvloopEventLoop:
    """uvicorn's --loop takes a factory: this one adds the monitor."""
    return MonitoredUvloopEventLoop(log_slow)


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps({"path": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
