"""The examples, each run as its README section says: the FastAPI service (the slow endpoint
found by name from a scrape), the multi-worker setups (uvicorn ``--workers``, gunicorn with
our worker class), the OpenTelemetry console exporter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from integration_helpers import (
    LOCALHOST,
    REPO_ROOT,
    Server,
    env_with,
    free_port,
    http_get,
    start_uvicorn,
    wait_for,
)

pytest.importorskip("fastapi")
prometheus_parser = pytest.importorskip("prometheus_client.parser")

pytestmark = pytest.mark.timeout(90)

APP = "examples.fastapi_service.app:app"
WORKER_CLASS = "monitored_ioloop.gunicorn.MonitoredUvicornWorker"
SLOW_NAME = "[GET] /api/v1/reports/_ ("


def scrape(port: int) -> dict[str, Any]:
    text = wait_for(f"http://{LOCALHOST}:{port}/metrics").decode()
    return {f.name: f for f in prometheus_parser.text_string_to_metric_families(text)}


def test_fastapi_service_names_its_slow_endpoint_in_a_scrape(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = start_uvicorn(APP, tmp_path / "uvicorn.log", env_with(
        MONITORED_IOLOOP_PROMETHEUS_PORT=str(metrics_port), MONITORED_IOLOOP_WATCHDOG="0.1",
    ), ready_path="/api/v1/users/1/name")
    try:
        assert b"user-123" in http_get(server.url + "/api/v1/users/123/name")
        http_get(server.url + "/api/v1/reports/7")
        families = scrape(metrics_port)
    finally:
        server.stop()
    by_name = {s.labels["callback"]: s.value
               for s in families["monitored_ioloop_slow_callbacks_by_name"].samples}
    slow = [name for name in by_name if name.startswith(SLOW_NAME)]
    assert slow and by_name[slow[0]] == 1, by_name
    assert not any(name.startswith("[GET] /api/v1/users") for name in by_name)
    last = [s for s in families["monitored_ioloop_slow_callback_last_seconds"].samples
            if s.labels["callback"] == slow[0]]
    assert last and last[0].value >= 0.15
    assert ".py:" in last[0].labels["location"]  # the request task's span (in uvicorn)
    # The watchdog saw the loop thread inside the endpoint: app.py and the line.
    blocked = families["monitored_ioloop_watchdog_blocked_seconds"].samples
    assert any(s.labels["callback"].startswith(SLOW_NAME)
               and "fastapi_service/app.py:" in s.labels["location"] for s in blocked), blocked


def start_gunicorn(log_path: Path, env: dict[str, str], workers: int) -> Server:
    pytest.importorskip("gunicorn")
    port = free_port()
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", APP, "-k", WORKER_CLASS, "-w", str(workers), "-b",
         f"{LOCALHOST}:{port}", "--graceful-timeout", "1"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    server = Server(process, port, log_path)
    try:
        wait_for(server.url + "/api/v1/users/1/name", process=process)
    except BaseException:
        server.stop()
        raise RuntimeError(f"gunicorn did not start:\n{server.log()}") from None
    return server


@pytest.mark.parametrize("runner", ["uvicorn", "gunicorn"])
def test_two_workers_each_on_their_own_metrics_port(runner: str, tmp_path: Path) -> None:
    metrics_port = free_port(2)
    env = env_with(MONITORED_IOLOOP_PROMETHEUS_PORT=str(metrics_port))
    log = tmp_path / f"{runner}.log"
    if runner == "uvicorn":
        server = start_uvicorn(APP, log, env, workers=2, ready_path="/api/v1/users/1/name")
    else:
        server = start_gunicorn(log, env, workers=2)
    try:
        for i in range(6):
            http_get(server.url + f"/api/v1/users/{i}/name")
        scraped = [scrape(metrics_port + i) for i in range(2)]
    finally:
        server.stop()
    labels = [f["monitored_ioloop_iterations"].samples[0].labels for f in scraped]
    assert sorted(lb["worker"] for lb in labels) == ["0", "1"]
    assert len({lb["pid"] for lb in labels}) == 2
    assert str(server.process.pid) not in {lb["pid"] for lb in labels}


def test_otel_console_example_prints_the_loop_metrics() -> None:
    pytest.importorskip("opentelemetry.sdk.metrics")
    out = subprocess.run([sys.executable, "examples/otel_console.py"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60, env=env_with())
    assert out.returncode == 0, out.stderr
    assert "monitored_ioloop.dispatches" in out.stdout
    assert "monitored_ioloop.utilization" in out.stdout

