"""The benchmark's HTTP workloads end to end, briefly: uvicorn serving the hello-world ASGI app
and the FastAPI JSON endpoint on the native loop in a server process, loaded by the native load
generator, the server's CPU time per request the benchmark reads, and the tables drawn from
them. Figures belong to the benchmark; this only checks that requests are served, the CPU time
is counted and the tables hold what they say."""

from __future__ import annotations

import os
import time

import pytest
from monitored_ioloop.bench.__main__ import (
    Echo,
    _measure_echo,
    monitoring_costs,
    render_costs,
    render_server_cpu,
)
from monitored_ioloop.bench.net import (
    FASTAPI,
    HTTP,
    cpu_times,
    fastapi_available,
    http_available,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("style", [HTTP, FASTAPI])
def test_an_http_workload_is_served_on_the_native_loop(style: str) -> None:
    if not (fastapi_available() if style == FASTAPI else http_available()):
        pytest.skip(f"{style} is not installed")
    # Long enough for a first response on a busy machine (the app warms up on its first one).
    sample = _measure_echo("native", Echo(style, 0), 1.0)
    assert sample.rate > 0
    assert sample.p50 is not None and sample.p99 is not None and sample.p50 <= sample.p99


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_cpu_times_count_a_busy_process() -> None:
    before = cpu_times(os.getpid())
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    after = cpu_times(os.getpid())
    assert before is not None and after is not None
    assert after[0] > before[0]
    assert cpu_times(2**22 + 1) is None  # above Linux's largest pid


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_an_echo_workload_reports_the_servers_cpu_per_request() -> None:
    sample = _measure_echo("native", Echo("protocol", 1024), 1.0)
    assert sample.rate > 0
    assert sample.user_us is not None and sample.system_us is not None
    # Each echo is a recv and a send at least: kernel time on every request.
    assert sample.system_us > 0
    assert sample.cpu_us == sample.user_us + sample.system_us


def test_server_cpu_table_has_a_row_per_network_workload() -> None:
    entry = {"ops_per_second": 1e5, "samples": [1e5], "server_cpu_us": 7.0,
             "server_user_us": 1.0, "server_system_us": 6.0}
    results = {"workloads": {
        "call_soon": {"loops": {"native": {"ops_per_second": 1e6, "samples": [1e6]}}},
        "echo-protocol-1KiB": {"loops": {"native": dict(entry, cpu_vs_uvloop=0.98)}},
    }}
    table = render_server_cpu(results, ["native"]).splitlines()
    assert len(table) == 4  # title, header, rule, one row
    assert table[-1].split() == ["echo-protocol-1KiB", "1.0", "+", "6.0", "us", "0.98x"]


def test_no_monitoring_cost_table_without_a_feature_loop() -> None:
    results = {"workloads": {"http-uvicorn": {"loops": {
        "native": {"samples": [4e4]}, "uvloop": {"samples": [4e4]},
    }}}}
    assert render_costs(monitoring_costs(results, ["uvloop", "native"])) == ""
    results["workloads"]["http-uvicorn"]["loops"]["native-bare"] = {"samples": [5e4]}
    table = render_costs(monitoring_costs(results, ["native", "native-bare"])).splitlines()
    assert table[-1].split() == ["http-uvicorn", "-20.0%"]
