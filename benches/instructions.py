"""Instructions per operation, counted by valgrind (callgrind), for loops side by side: a count
that does not drift with a noisy machine, where wall-clock ratios swing by tens of percent.

Each scenario runs in a fresh process with N and with 3N operations; the difference divided
by 2N leaves out start-up and imports. Scenarios: the benchmark's micro workloads (through
``monitored_ioloop.bench.worker``) and the networking ones in ``scenarios/``.

    python benches/instructions.py [--loops native,uvloop] [SCENARIO ...]

Needs valgrind on PATH; uvloop, rloop, uvicorn and httptools where a scenario or loop asks.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent

#: name -> (command after the interpreter, N)
SCENARIOS: Dict[str, Tuple[List[str], int]] = {
    "call_soon": (["-m", "monitored_ioloop.bench.worker", "{loop}", "call_soon"], 20000),
    "sleep0": (["-m", "monitored_ioloop.bench.worker", "{loop}", "sleep0"], 20000),
    "future": (["-m", "monitored_ioloop.bench.worker", "{loop}", "future"], 20000),
    "timers": (["-m", "monitored_ioloop.bench.worker", "{loop}", "timers"], 20000),
    "gather": (["-m", "monitored_ioloop.bench.worker", "{loop}", "gather"], 5000),
    "protocol_read": ([str(HERE / "scenarios" / "protocol.py"), "read", "{loop}"], 10000),
    "protocol_echo": ([str(HERE / "scenarios" / "protocol.py"), "echo", "{loop}"], 10000),
    "streams_echo": ([str(HERE / "scenarios" / "streams_echo.py"), "{loop}"], 3000),
    "uvicorn_hello": ([str(HERE / "scenarios" / "uvicorn_app.py"), "hello", "{loop}"], 1000),
    "fastapi_json": ([str(HERE / "scenarios" / "uvicorn_app.py"), "fastapi", "{loop}"], 1000),
}

# The worker runs a tenth of N as a warm-up before its N: 1.1 N operations in all.
WORKER_FACTOR = 1.1


def collected(command: List[str]) -> Optional[int]:
    """Instructions the whole process executed; None if it failed (e.g. rloop on a transport
    call it lacks)."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            # quanta calibrates its clock once per process by spinning for a while: a count
            # that follows the machine's speed. Leaving it out makes the count repeat to a few
            # instructions per operation (the option must come before --collect-atstart).
            "--toggle-collect=quanta::Clock::new",
            "--collect-atstart=yes",
            *command,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONHASHSEED="0"),
    )
    if out.returncode != 0:
        return None
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def per_operation(scenario: str, loop: str) -> Optional[float]:
    template, n = SCENARIOS[scenario]
    args = [part.format(loop=loop) for part in template]
    low = collected([sys.executable, *args, str(n)])
    high = collected([sys.executable, *args, str(3 * n)]) if low is not None else None
    if low is None or high is None:
        return None
    operations = 2 * n * (WORKER_FACTOR if "monitored_ioloop.bench.worker" in args else 1)
    return (high - low) / operations


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", default="native,uvloop")
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    options = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed", file=sys.stderr)
        return 2
    loops = options.loops.split(",")
    print(f"{'scenario':16s}" + "".join(f"{loop:>16s}" for loop in loops))
    for scenario in options.scenarios:
        counts = [per_operation(scenario, loop) for loop in loops]
        cells = ("n/a" if count is None else f"{count:.0f}" for count in counts)
        print(f"{scenario:16s}" + "".join(f"{cell:>16s}" for cell in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
