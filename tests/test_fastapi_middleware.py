"""The FastAPI/Starlette middleware names each request's task ``[METHOD] /path`` with numeric
segments masked; the loop's pretty name and the slow-callback record carry it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from integration_helpers import LOCALHOST, free_port  # noqa: E402
from monitored_ioloop.helpers.fastapi import (  # noqa: E402
    MonitoredIOLoopMiddleware,
    default_callback_pretty_name,
    mask_numeric_segments,
)
from monitored_ioloop.monitored_uvloop import monitored_uvloop_loop_factory  # noqa: E402

pytestmark = pytest.mark.timeout(60)

NAME = "[GET] /api/v1/users/_/name"


def test_mask_numeric_segments() -> None:
    assert mask_numeric_segments("/api/v1/users/123/name") == "/api/v1/users/_/name"
    assert mask_numeric_segments("/v2/7") == "/v2/_"
    assert mask_numeric_segments("/") == "/"


def test_default_callback_pretty_name() -> None:
    scope = {"type": "http", "method": "POST", "path": "/orders/42"}
    assert default_callback_pretty_name(scope) == "[POST] /orders/_"


def serve(app: Any, loop: Any, requests: list[str]) -> list[Any]:
    import httpx
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOCALHOST, port=port, log_level="warning",
                                           lifespan="off"))

    async def run() -> list[Any]:
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient() as client:
                return [await client.get(f"http://{LOCALHOST}:{port}{path}") for path in requests]
        finally:
            server.should_exit = True
            await serving

    return list(loop.run_until_complete(run()))


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
def test_requests_are_named_and_slow_records_carry_the_name(
    framework: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    async def user_name(user_id: int) -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        seen.append(task.get_name())
        time.sleep(0.15)  # blocks the loop: a slow callback
        return {"id": user_id}

    if framework == "fastapi":
        fastapi = pytest.importorskip("fastapi")
        app: Any = fastapi.FastAPI()
        app.get("/api/v1/users/{user_id}/name")(user_name)
        app.add_middleware(MonitoredIOLoopMiddleware)
    else:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def endpoint(request: Any) -> Any:
            return JSONResponse(await user_name(int(request.path_params["user_id"])))

        app = Starlette(routes=[Route("/api/v1/users/{user_id:int}/name", endpoint)],
                        middleware=[Middleware(MonitoredIOLoopMiddleware)])

    loop = monitored_uvloop_loop_factory(slow_callback_threshold=0.1)()
    try:
        with caplog.at_level(logging.WARNING, logger="monitored_ioloop.slow_callbacks"):
            (response,) = serve(app, loop, ["/api/v1/users/123/name"])
        snap = loop.monitor_snapshot()
    finally:
        loop.close()
    assert response.status_code == 200
    assert seen == [NAME]
    (slow,) = [r for r in snap.slow_callbacks if r.task_name == NAME]
    assert slow.name.startswith(NAME + " (")
    assert slow.wall_time >= 0.15
    logged = [r for r in caplog.records if getattr(r, "task_name", None) == NAME]
    assert logged and logged[0].callback_name == slow.name


def test_other_scopes_pass_through_unnamed() -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        calls.append(task.get_name() if task else "")

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.set_name("lifespan-task")
        await MonitoredIOLoopMiddleware(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]

    loop = monitored_uvloop_loop_factory()()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert calls == ["lifespan-task"]
