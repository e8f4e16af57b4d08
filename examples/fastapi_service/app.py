"""A FastAPI service on the native loop, with the task-naming middleware and the Prometheus
endpoint, in which one endpoint blocks the loop. Run it (see the README's "Examples"):

    MONITORED_IOLOOP_PROMETHEUS_PORT=9464 MONITORED_IOLOOP_WATCHDOG=0.1 \\
        uvicorn examples.fastapi_service.app:app \\
        --loop monitored_ioloop.monitored_uvloop:new_event_loop
    curl localhost:8000/api/v1/users/123/name; curl localhost:8000/api/v1/reports/7
    curl -s localhost:9464/metrics | grep slow_callback

The scrape names the slow endpoint (``callback="[GET] /api/v1/reports/_ (...)"``) with its
``location``; ``python -m monitored_ioloop.top http://127.0.0.1:9464`` shows it live.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI
from monitored_ioloop.helpers.fastapi import MonitoredIOLoopMiddleware

app = FastAPI()
app.add_middleware(MonitoredIOLoopMiddleware)


@app.get("/api/v1/users/{user_id}/name")
async def user_name(user_id: int) -> dict[str, object]:
    await asyncio.sleep(0.001)
    return {"id": user_id, "name": f"user-{user_id}"}


@app.get("/api/v1/reports/{report_id}")
async def report(report_id: int) -> dict[str, object]:
    time.sleep(0.15)  # a blocking call inside async code: what the monitoring finds
    return {"id": report_id, "rows": 0}
