"""Real HTTP servers and clients on the native loop: uvicorn started as a user starts it (a
subprocess with ``--loop monitored_ioloop.monitored_uvloop:new_event_loop``, with the httptools
and the h11 protocol), aiohttp and httpx clients running on the loop against it, and an aiohttp
server on the loop answering httpx from another thread.

uvicorn (0.36+) takes ``--loop module:callable`` as a loop *factory*: it calls it with no
arguments for each loop, which is what ``new_event_loop`` is."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Iterator, TypeVar

import aiohttp
import httpx
import pytest
from aiohttp import web
from integration_helpers import free_port
from monitored_ioloop.loop import Loop

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")

LOCALHOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
LOOP_FACTORY = "monitored_ioloop.monitored_uvloop:new_event_loop"
NATIVE_LOOP_TYPE = "monitored_ioloop.monitored_uvloop.MonitoredUvloopEventLoop"
MiB = 1024 * 1024
STARTUP_TIMEOUT_S = 20.0


def run_within(loop: Loop, awaitable: Awaitable[T], timeout: float = 30.0) -> T:
    return loop.run_until_complete(asyncio.wait_for(awaitable, timeout))


# -- uvicorn as a subprocess --------------------------------------------------------------------


@dataclasses.dataclass
class Uvicorn:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def interrupt(self, timeout: float = 15.0) -> int:
        """Sends SIGINT (Ctrl-C) and waits for the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def start_uvicorn(http_impl: str, log_path: Path) -> Uvicorn:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.net_apps.asgi_app:app",
        "--loop",
        LOOP_FACTORY,
        "--http",
        http_impl,
        "--host",
        LOCALHOST,
        "--port",
        str(port),
        "--no-access-log",
    ]
    log_file = open(log_path, "wb")
    try:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT
        )
    finally:
        log_file.close()
    server = Uvicorn(process, port, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"uvicorn exited with {process.returncode}:\n{server.log()}")
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError(f"uvicorn did not listen within {STARTUP_TIMEOUT_S}s:\n{server.log()}")


@pytest.fixture(scope="module", params=["httptools", "h11"])
def uvicorn_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Uvicorn]:
    log_path = tmp_path_factory.mktemp("uvicorn") / f"{request.param}.log"
    server = start_uvicorn(request.param, log_path)
    try:
        yield server
    finally:
        server.kill()


def get(port: int, path: str, connection: http.client.HTTPConnection | None = None) -> Any:
    conn = connection or http.client.HTTPConnection(LOCALHOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body)
    finally:
        if connection is None:
            conn.close()


# -- uvicorn queried with the standard library (the server is what is tested) -------------------


def test_uvicorn_runs_the_app_on_the_native_loop(uvicorn_server: Uvicorn) -> None:
    assert get(uvicorn_server.port, "/") == {"hello": "world", "loop": NATIVE_LOOP_TYPE}


def test_uvicorn_echoes_an_8_mib_post_body(uvicorn_server: Uvicorn) -> None:
    body = os.urandom(8 * MiB)
    conn = http.client.HTTPConnection(LOCALHOST, uvicorn_server.port, timeout=30)
    try:
        conn.request("POST", "/echo", body=body)
        response = conn.getresponse()
        echoed = response.read()
    finally:
        conn.close()
    assert response.status == 200
    assert response.getheader("x-body-length") == str(len(body))
    assert echoed == body


def test_uvicorn_answers_200_sequential_requests_on_one_connection(
    uvicorn_server: Uvicorn,
) -> None:
    conn = http.client.HTTPConnection(LOCALHOST, uvicorn_server.port, timeout=10)
    try:
        answers = [get(uvicorn_server.port, "/", conn) for _ in range(200)]
    finally:
        conn.close()
    assert len(answers) == 200
    assert all(answer["hello"] == "world" for answer in answers)


def test_uvicorn_answers_50_concurrent_requests(uvicorn_server: Uvicorn) -> None:
    def echo(i: int) -> bytes:
        conn = http.client.HTTPConnection(LOCALHOST, uvicorn_server.port, timeout=20)
        try:
            conn.request("POST", "/echo", body=b"request %d" % i)
            response = conn.getresponse()
            assert response.status == 200
            return response.read()
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(echo, range(50)))
    assert replies == [b"request %d" % i for i in range(50)]


@pytest.mark.parametrize("http_impl", ["httptools", "h11"])
def test_uvicorn_shuts_down_cleanly_on_sigint(http_impl: str, tmp_path: Path) -> None:
    server = start_uvicorn(http_impl, tmp_path / "uvicorn.log")
    try:
        assert get(server.port, "/")["loop"] == NATIVE_LOOP_TYPE
        code = server.interrupt()
    finally:
        server.kill()
    log = server.log()
    assert code == 0, log
    assert "Shutting down" in log
    assert "Finished server process" in log
    assert "Traceback" not in log


def test_uvicorn_shuts_down_gracefully_on_sigterm(tmp_path: Path) -> None:
    server = start_uvicorn("httptools", tmp_path / "uvicorn.log")
    try:
        assert get(server.port, "/")["hello"] == "world"
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=15)
    finally:
        server.kill()
    # uvicorn re-raises the signal it caught once it has shut down (as on asyncio and uvloop).
    assert code == -signal.SIGTERM, server.log()
    assert "Shutting down" in server.log()
    assert "Finished server process" in server.log()


def test_uvicorn_shuts_down_on_sigint_with_an_idle_keep_alive_connection_open(
    tmp_path: Path,
) -> None:
    server = start_uvicorn("httptools", tmp_path / "uvicorn.log")
    conn = http.client.HTTPConnection(LOCALHOST, server.port, timeout=10)
    try:
        assert get(server.port, "/", conn)["hello"] == "world"
        code = server.interrupt()
    finally:
        conn.close()
        server.kill()
    assert code == 0, server.log()
    assert "Finished server process" in server.log()


# -- clients running on the native loop ---------------------------------------------------------


def test_aiohttp_client_on_the_native_loop_talks_to_uvicorn(
    loop: Loop, uvicorn_server: Uvicorn
) -> None:
    body = os.urandom(2 * MiB)

    async def main() -> tuple[Any, bytes, str]:
        async with aiohttp.ClientSession() as session:
            async with session.get(uvicorn_server.url + "/") as response:
                answer = await response.json()
            async with session.post(uvicorn_server.url + "/echo", data=body) as response:
                echoed = await response.read()
                length = response.headers["x-body-length"]
        return answer, echoed, length

    answer, echoed, length = run_within(loop, main())
    assert answer == {"hello": "world", "loop": NATIVE_LOOP_TYPE}
    assert echoed == body
    assert length == str(len(body))


def test_httpx_async_client_on_the_native_loop_makes_50_concurrent_requests(
    loop: Loop, uvicorn_server: Uvicorn
) -> None:
    async def main() -> list[bytes]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(
            base_url=uvicorn_server.url, limits=limits, trust_env=False, timeout=20
        ) as client:
            responses = await asyncio.gather(
                *(client.post("/echo", content=b"httpx %d" % i) for i in range(50))
            )
        assert all(r.status_code == 200 for r in responses)
        return [r.content for r in responses]

    assert run_within(loop, main()) == [b"httpx %d" % i for i in range(50)]


# -- an aiohttp server on the native loop -------------------------------------------------------


async def aiohttp_hello(request: web.Request) -> web.Response:
    loop_type = type(asyncio.get_running_loop())
    return web.json_response({"hello": "aiohttp", "loop": loop_type.__qualname__})


async def aiohttp_echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


def test_aiohttp_server_on_the_native_loop_answers_httpx_from_a_thread(loop: Loop) -> None:
    body = os.urandom(4 * MiB)

    def query(port: int) -> tuple[Any, bytes, int]:
        with httpx.Client(base_url=f"http://{LOCALHOST}:{port}", trust_env=False, timeout=20) as c:
            hello = c.get("/").json()
            echoed = c.post("/echo", content=body).content
            statuses = {c.get("/").status_code for _ in range(50)}
        assert statuses == {200}
        return hello, echoed, len(statuses)

    async def main() -> tuple[Any, bytes, int]:
        app = web.Application(client_max_size=8 * MiB)
        app.router.add_get("/", aiohttp_hello)
        app.router.add_post("/echo", aiohttp_echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, LOCALHOST, 0)
            await site.start()
            port = runner.addresses[0][1]
            return await loop.run_in_executor(None, query, port)
        finally:
            await runner.cleanup()

    hello, echoed, _ = run_within(loop, main())
    assert hello == {"hello": "aiohttp", "loop": "Loop"}
    assert echoed == body
