"""``MONITORED_IOLOOP_*`` environment variables: each has an effect on the loop
``new_event_loop()`` makes; a malformed one is one ``ValueError`` naming the variable."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from integration_helpers import LOCALHOST, REPO_ROOT, env_with, free_port, http_get
from monitored_ioloop import config
from monitored_ioloop.monitored_uvloop import new_event_loop

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def no_env_endpoint() -> Iterator[None]:
    yield
    config.close_endpoint()


def make_loop(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return new_event_loop()


def block(seconds: float) -> None:
    time.sleep(seconds)


def run_blocking(loop: Any, *durations: float) -> None:
    for seconds in durations:
        loop.call_soon(block, seconds)
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_slow_callback_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = make_loop(monkeypatch, MONITORED_IOLOOP_SLOW_CALLBACK="0.02")
    try:
        assert loop.slow_callback_threshold == 0.02
        run_blocking(loop, 0.03, 0.001)
        assert loop.monitor_snapshot().slow_callbacks_total == 1
    finally:
        loop.close()


def test_slow_callback_off(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = make_loop(monkeypatch, MONITORED_IOLOOP_SLOW_CALLBACK="off")
    try:
        assert loop.slow_callback_threshold is None
        run_blocking(loop, 0.12)
        assert loop.monitor_snapshot().slow_callbacks_total == 0
    finally:
        loop.close()


def test_slow_callback_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = make_loop(monkeypatch, MONITORED_IOLOOP_SLOW_CALLBACK="0.005",
                     MONITORED_IOLOOP_SLOW_CALLBACK_CAPACITY="2")
    try:
        run_blocking(loop, 0.01, 0.01, 0.01)
        snap = loop.monitor_snapshot()
    finally:
        loop.close()
    assert snap.slow_callbacks_total == 3
    assert len(snap.slow_callbacks) == 2


def test_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = make_loop(monkeypatch, MONITORED_IOLOOP_WATCHDOG="0.05")
    try:
        run_blocking(loop, 0.3)
        snap = loop.monitor_snapshot()
    finally:
        loop.close()
    assert snap.watchdog_reports_total >= 1
    assert "block" in snap.watchdog_reports[-1].stack


def test_prometheus_port_and_addr(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    loop = make_loop(monkeypatch, MONITORED_IOLOOP_PROMETHEUS_PORT=str(port),
                     MONITORED_IOLOOP_PROMETHEUS_ADDR="127.0.0.2")
    try:
        run_blocking(loop, 0.0)
        doc = json.loads(http_get(f"http://127.0.0.2:{port}/monitored_ioloop.json"))
        assert doc["dispatches"] == loop.monitor_snapshot().dispatches
        endpoint = config.endpoint()
        assert endpoint is not None and endpoint.addr == "127.0.0.2"
    finally:
        loop.close()


def test_prometheus_workers_bounds_the_ports_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port(2)
    with socket.socket() as taken:
        taken.bind((LOCALHOST, port))
        taken.listen()
        loop = make_loop(monkeypatch, MONITORED_IOLOOP_PROMETHEUS_PORT=str(port),
                         MONITORED_IOLOOP_PROMETHEUS_WORKERS="1")
        loop.close()
        assert config.endpoint() is None
        monkeypatch.setenv("MONITORED_IOLOOP_PROMETHEUS_WORKERS", "2")
        loop = new_event_loop()
        loop.close()
        endpoint = config.endpoint()
        assert endpoint is not None and endpoint.port == port + 1


def test_a_second_loop_moves_the_endpoint_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    first = make_loop(monkeypatch, MONITORED_IOLOOP_PROMETHEUS_PORT=str(port))
    first.close()
    second = new_event_loop()
    try:
        run_blocking(second, 0.0, 0.0)
        doc = json.loads(http_get(f"http://{LOCALHOST}:{port}/monitored_ioloop.json"))
        assert doc["dispatches"] == second.monitor_snapshot().dispatches
    finally:
        second.close()


def test_log_format_json(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import time
        from monitored_ioloop.monitored_uvloop import new_event_loop
        loop = new_event_loop()
        loop.call_soon(time.sleep, 0.05)
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.close()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
        env=env_with(MONITORED_IOLOOP_LOG_FORMAT="json", MONITORED_IOLOOP_SLOW_CALLBACK="0.02"),
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    slow = [r for r in records if r["logger"] == "monitored_ioloop.slow_callbacks"]
    assert slow and slow[0]["wall_time"] >= 0.05 and "callback_name" in slow[0]


@pytest.mark.parametrize(
    "name, value",
    [
        ("MONITORED_IOLOOP_SLOW_CALLBACK", "fast"),
        ("MONITORED_IOLOOP_SLOW_CALLBACK", "-1"),
        ("MONITORED_IOLOOP_SLOW_CALLBACK_CAPACITY", "0"),
        ("MONITORED_IOLOOP_WATCHDOG", "1s"),
        ("MONITORED_IOLOOP_PROMETHEUS_PORT", "http"),
        ("MONITORED_IOLOOP_PROMETHEUS_PORT", "70000"),
        ("MONITORED_IOLOOP_PROMETHEUS_WORKERS", "many"),
        ("MONITORED_IOLOOP_LOG_FORMAT", "xml"),
    ],
)
def test_a_malformed_value_is_one_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"^{name}="):
        new_event_loop()


def test_uvicorn_with_a_malformed_value_stops_at_start_up_naming_it(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    from integration_helpers import LOOP_FACTORY

    out = subprocess.run(
        [sys.executable, "-m", "uvicorn", "net_apps.asgi_app:app", "--port", str(free_port()),
         "--host", LOCALHOST, "--loop", LOOP_FACTORY],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
        env=env_with(MONITORED_IOLOOP_WATCHDOG="soon"),
    )
    assert out.returncode != 0
    assert "ValueError: MONITORED_IOLOOP_WATCHDOG='soon'" in out.stderr
