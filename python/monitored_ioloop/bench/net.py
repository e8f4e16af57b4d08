"""Network workloads: a server in one process (the loop under test: an echo server in one
style, uvicorn serving a hello-world ASGI app, or uvicorn serving a FastAPI endpoint that returns
JSON), the native load generator in another, pinned to different cores.

``python -m monitored_ioloop.bench.net serve LOOP STYLE`` prints the port, then serves until
killed; ``python -m monitored_ioloop.bench.net load PORT SIZE CONNECTIONS SECONDS [STYLE
[SERVER_PID]]`` prints JSON (STYLE ``http`` sends keep-alive GETs instead of echo messages).
Given the server's pid, the load also reports the server's CPU time per request over the
measured window, split into user and system (kernel) time: on Linux only, read from
``/proc/PID/stat`` in clock ticks (10 ms), so a window of a second resolves it to about 1 %.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
import time
from typing import Any, Callable, Optional, Tuple

from monitored_ioloop.bench.loops import LOOPS

STYLES = ("sock", "streams", "protocol")
HTTP = "http"
#: uvicorn serving a FastAPI endpoint that returns JSON (loaded as HTTP).
FASTAPI = "fastapi"
HTTP_STYLES = (HTTP, FASTAPI)


def http_available() -> bool:
    """uvicorn (with httptools or h11) is what the HTTP workload serves with."""
    import importlib.util

    return importlib.util.find_spec("uvicorn") is not None


def fastapi_available() -> bool:
    import importlib.util

    return http_available() and importlib.util.find_spec("fastapi") is not None


async def _hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")]})
    await send({"type": "http.response.body", "body": b"hello, world"})


def _json_app() -> Any:
    """A FastAPI app whose endpoint returns a small JSON document, validated by a model."""
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Item(BaseModel):
        id: int
        name: str
        tags: list[str]

    app = FastAPI()

    @app.get("/", response_model=Item)
    async def item() -> Any:
        return Item(id=1, name="hello, world", tags=["a", "b"])

    return app


async def _serve_http(listener: socket.socket, app: Any = _hello_app) -> None:
    import importlib.util

    import uvicorn

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    config = uvicorn.Config(
        app, loop="none", http=http, lifespan="off", log_level="warning",
        access_log=False,
    )
    await uvicorn.Server(config).serve(sockets=[listener])
READ_SIZE = 256 * 1024


class _EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _serve_sock(loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
    async def echo(conn: socket.socket) -> None:
        with conn:
            while True:
                data = await loop.sock_recv(conn, READ_SIZE)
                if not data:
                    return
                await loop.sock_sendall(conn, data)

    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop.create_task(echo(conn))


async def _serve_streams(listener: socket.socket) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, sock=listener)
    await server.serve_forever()


async def _serve(loop_name: str, style: str) -> None:
    loop = asyncio.get_running_loop()
    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on sockets created with it.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    print(listener.getsockname()[1], flush=True)
    if style == HTTP:
        await _serve_http(listener)
    elif style == FASTAPI:
        await _serve_http(listener, _json_app())
    elif style == "sock":
        await _serve_sock(loop, listener)
    elif style == "streams":
        await _serve_streams(listener)
    else:
        server = await loop.create_server(_EchoProtocol, sock=listener)
        await server.serve_forever()


def serve(loop_name: str, style: str) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {0})
    loop = LOOPS[loop_name]()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(loop_name, style))
    except KeyboardInterrupt:
        pass


def cpu_times(pid: int) -> Optional[Tuple[float, float]]:
    """The user and system CPU seconds process `pid` has used so far, or None where there is no
    ``/proc`` to read them from (or no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # Fields 14 and 15 (utime, stime), counted after the parenthesised command name,
            # which may itself hold spaces.
            fields = stat.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, ValueError, IndexError):
        return None


def _with_server_cpu(
    run: Callable[[], dict[str, Any]], pid: int, warmup: float, seconds: float
) -> dict[str, Any]:
    """`run()`'s result, with the server's CPU time per request (microseconds, user and system)
    over the measured window: read when the warm-up ends and when the window closes, while the
    load runs in a thread (the native load generator releases the GIL)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    time.sleep(max(0.0, started + warmup - time.monotonic()))
    before = cpu_times(pid)
    time.sleep(max(0.0, started + warmup + seconds - time.monotonic()))
    after = cpu_times(pid)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    result: dict[str, Any] = outcome["result"]
    if before is not None and after is not None and result["requests"] > 0:
        result["server_user_us"] = (after[0] - before[0]) / result["requests"] * 1e6
        result["server_system_us"] = (after[1] - before[1]) / result["requests"] * 1e6
    return result


def load(
    port: int,
    size: int,
    connections: int,
    seconds: float,
    style: str = "echo",
    server_pid: Optional[int] = None,
) -> dict[str, Any]:
    """Loads the server on `port` for a warm-up, then `seconds` measured: requests/s, latency
    percentiles and, given `server_pid` (on Linux), the server's CPU time per request."""
    from monitored_ioloop._native import echo_load, http_load

    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {1})
    warmup = min(0.5, seconds / 2)
    address = f"127.0.0.1:{port}"

    def run() -> dict[str, Any]:
        if style in HTTP_STYLES:
            return http_load(address, "/", connections, seconds, warmup=warmup)
        return echo_load(address, size, connections, seconds, warmup=warmup)

    if server_pid is None:
        return run()
    return _with_server_cpu(run, server_pid, warmup, seconds)


def main(argv: list[str]) -> int:
    if argv[0] == "serve":
        serve(argv[1], argv[2])
    else:
        style = argv[5] if len(argv) > 5 else "echo"
        server_pid = int(argv[6]) if len(argv) > 6 else None
        result = load(
            int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4]), style, server_pid
        )
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
