"""Memory the loops take: RSS growth per pending timer and per idle TCP connection on a server,
each loop measured in a fresh process (Linux: reads /proc/self/status).

    python -m monitored_ioloop.bench.memory [--timers N] [--connections N] [LOOP ...]

RSS deltas depend on the allocator: expect some variation from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
from typing import Any, Optional

from monitored_ioloop.bench.loops import LOOPS, available_loops

# The client that opens the idle connections, in its own process (its sockets are not counted).
_CLIENT = r"""
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
sys.stdin.readline()
"""


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def per_timer(loop_name: str, n: int) -> float:
    """Bytes of RSS per pending `call_later` timer (the loop holds them; the caller does not)."""
    loop = LOOPS[loop_name]()
    try:
        gc.collect()
        before = _rss_bytes()
        for _ in range(n):
            loop.call_later(3600.0, gc.isenabled)
        gc.collect()
        return (_rss_bytes() - before) / n
    finally:
        loop.close()


def per_connection(loop_name: str, n: int) -> float:
    """Bytes of RSS per idle accepted TCP connection (a protocol that keeps its transport)."""
    loop = LOOPS[loop_name]()
    made = 0
    all_made: Optional[asyncio.Future[None]] = None

    class Idle(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            nonlocal made
            self.transport = transport
            made += 1
            if made == n and all_made is not None and not all_made.done():
                all_made.set_result(None)

    async def measure() -> float:
        nonlocal all_made
        all_made = loop.create_future()
        server = await loop.create_server(Idle, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
        gc.collect()
        before = _rss_bytes()
        client = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, str(port), str(n)],
            stdin=subprocess.PIPE, text=True,
        )
        try:
            await asyncio.wait_for(all_made, 120)
            await asyncio.sleep(0.2)
            gc.collect()
            return (_rss_bytes() - before) / n
        finally:
            assert client.stdin is not None
            client.stdin.write("\n")
            client.stdin.close()
            client.wait()
            server.close()

    try:
        return loop.run_until_complete(measure())
    finally:
        loop.close()


def _measure_in_child(kind: str, loop_name: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "monitored_ioloop.bench.memory", "--child", kind, loop_name,
         str(n)],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitored_ioloop.bench.memory",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timers", type=int, default=200_000, help="pending timers (200000)")
    parser.add_argument("--connections", type=int, default=10_000,
                        help="idle connections (10000; needs as many file descriptors)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("loops", nargs="*", help="loops (default: asyncio uvloop native)")
    args: Any = parser.parse_args(argv)
    if args.child:
        kind, loop_name, n = args.child
        measure = per_timer if kind == "timer" else per_connection
        print(measure(loop_name, int(n)))
        return 0
    known = available_loops()
    names = args.loops or [name for name in ("asyncio", "uvloop", "native") if name in known]
    print(f"{'loop':18s} {'per pending timer':>18s} {'per idle connection':>20s}")
    for name in names:
        timer = _measure_in_child("timer", name, args.timers)
        connection = _measure_in_child("connection", name, args.connections)
        print(f"{name:18s} {timer:16.0f} B {connection:18.0f} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
