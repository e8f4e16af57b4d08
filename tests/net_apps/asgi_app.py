"""A tiny ASGI app for the real-server tests: ``GET /`` answers JSON naming the running loop,
``POST /echo`` answers the request body with its length in ``x-body-length``."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def http(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    method, path = scope["method"], scope["path"]
    if method == "GET" and path == "/":
        loop_type = type(asyncio.get_running_loop())
        payload = {"hello": "world", "loop": f"{loop_type.__module__}.{loop_type.__qualname__}"}
        await respond(send, 200, json.dumps(payload).encode(), b"application/json")
    elif method == "POST" and path == "/echo":
        body = await read_body(receive)
        await respond(
            send,
            200,
            body,
            b"application/octet-stream",
            ((b"x-body-length", str(len(body)).encode()),),
        )
    else:
        await respond(send, 404, b"not found", b"text/plain")


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
