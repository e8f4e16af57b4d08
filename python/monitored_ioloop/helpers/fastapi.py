"""ASGI middleware for Starlette and FastAPI apps: names the task serving each HTTP request
``"[METHOD] /path"`` (all-digit path segments masked as ``_``), so the loop's reports say which
endpoint ran: the pretty name ``"[GET] /users/_ (handler)"`` and a slow callback's
``task_name``.

    app.add_middleware(MonitoredIOLoopMiddleware)

Neither Starlette nor FastAPI is needed to import this module: the middleware speaks plain ASGI.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, MutableMapping, Protocol

__all__ = [
    "AsgiMiddlewareType",
    "MonitoredIOLoopMiddleware",
    "default_callback_pretty_name",
    "mask_numeric_segments",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiMiddlewareType(Protocol):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


def mask_numeric_segments(path: str) -> str:
    """``mask_numeric_segments("/api/v1/users/123/name") -> "/api/v1/users/_/name"``: keeps
    names bounded (one per route, not one per id)."""
    return "/".join("_" if part.isdigit() else part for part in path.split("/"))


def default_callback_pretty_name(scope: Scope) -> str:
    """``"[GET] /api/v1/users/_/name"`` for an HTTP scope."""
    return f"[{scope['method']}] {mask_numeric_segments(scope['path'])}"


class MonitoredIOLoopMiddleware:
    """Sets the current task's name from each HTTP request (other scopes pass through)."""

    def __init__(
        self,
        app: ASGIApp,
        callback_pretty_name: Callable[[Scope], str] = default_callback_pretty_name,
    ) -> None:
        self.app = app
        self._name = callback_pretty_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            task = asyncio.current_task()
            if task is not None:
                task.set_name(self._name(scope))
        await self.app(scope, receive, send)
