"""``python -m monitored_ioloop.top``: renders a recorded snapshot and a live endpoint, exits
cleanly (one line, status 1) on an unreachable URL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from integration_helpers import LOCALHOST, REPO_ROOT, env_with, free_port
from monitored_ioloop.endpoint import MonitoringEndpoint
from monitored_ioloop.monitored_uvloop import monitored_uvloop_loop_factory
from monitored_ioloop.top.view import render

pytestmark = pytest.mark.timeout(30)


def slow_step() -> None:
    time.sleep(0.03)


def recorded_loop() -> Any:
    loop = monitored_uvloop_loop_factory(slow_callback_threshold=0.02)()
    for _ in range(3):
        loop.call_soon(slow_step)
    loop.call_soon(loop.stop)
    loop.run_forever()
    return loop


def top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitored_ioloop.top", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=20, env=env_with())


def test_renders_a_recorded_snapshot(tmp_path: Path) -> None:
    loop = recorded_loop()
    try:
        doc = loop.monitor_snapshot().to_dict()
    finally:
        loop.close()
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(doc))
    out = top(str(path), "--once")
    assert out.returncode == 0, out.stderr
    assert "utilisation" in out.stdout and "dispatches" in out.stdout
    assert "wall time" in out.stdout and "loop lag" in out.stdout
    assert "slow_step" in out.stdout
    assert f"{doc['slow_callbacks_total']} total" in out.stdout


def test_renders_a_live_endpoint_over_a_window() -> None:
    loop = recorded_loop()
    endpoint = MonitoringEndpoint(lambda: loop.monitor_snapshot(), 0)
    try:
        out = top(endpoint.url, "--count", "2", "--interval", "0.2")
    finally:
        endpoint.close()
        loop.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("monitored_ioloop top") == 2
    assert "since start" in out.stdout and "window 0." in out.stdout


def test_unreachable_url_is_one_line_and_status_1() -> None:
    out = top(f"http://{LOCALHOST}:{free_port()}", "--once")
    assert out.returncode == 1
    assert out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("monitored_ioloop.top: cannot read http://")


def test_a_file_that_is_not_a_snapshot_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text("[1, 2]")
    out = top(str(path), "--once")
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1


def test_window_rates_come_from_the_difference() -> None:
    before = {"timestamp": 10.0, "dispatches": 100, "busy_time": 1.0, "idle_time": 1.0,
              "wall_time": {"buckets": [[0.001, 100]]}, "loop_lag": {}}
    after = {"timestamp": 12.0, "dispatches": 300, "busy_time": 2.5, "idle_time": 1.5,
             "wall_time": {"buckets": [[0.001, 100], [0.1, 110], [0.2, 300]]}, "loop_lag": {}}
    view = render(after, before)
    assert "dispatches 100/s" in view
    assert "utilisation  75.0%" in view
    assert "wall time  200.0ms" in view  # the window p50 lies in the 0.2 s bucket


def test_ctrl_c_exits_cleanly() -> None:
    loop = recorded_loop()
    endpoint = MonitoringEndpoint(lambda: loop.monitor_snapshot(), 0)
    process = subprocess.Popen(
        [sys.executable, "-m", "monitored_ioloop.top", endpoint.url, "--interval", "0.2"],
        cwd=REPO_ROOT, env=env_with(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        assert "monitored_ioloop top" in process.stdout.readline()  # it is running
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        endpoint.close()
        loop.close()
    assert process.returncode == 0
    assert "Traceback" not in stderr
