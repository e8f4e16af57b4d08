"""The memory benchmark (`python -m monitored_ioloop.bench.memory`): it measures each loop in a
child process and prints one row per loop."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")


def test_memory_benchmark_prints_a_row_per_loop() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "monitored_ioloop.bench.memory", "--timers", "20000",
         "--connections", "50", "native", "asyncio"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.splitlines()
    assert "per pending timer" in out[0] and "per idle connection" in out[0]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert set(rows) == {"native", "asyncio"}
    for row in rows.values():
        # name, bytes per timer, "B", bytes per connection, "B"
        assert row[2] == row[4] == "B"
        float(row[1]), float(row[3])
