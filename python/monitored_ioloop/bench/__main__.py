"""The benchmark's command line: rounds of fresh-process measurements, interleaved (A B C, then
C B A), then a table of throughput and median per-round speed ratios to uvloop.

Two groups of workloads: micro workloads of the loop core (one process each), and network
workloads, TCP echo and HTTP through uvicorn (a server process running the loop under test,
pinned to one core, and the native load generator in another process pinned to the other
core).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, NamedTuple, Optional

from monitored_ioloop.bench import plot
from monitored_ioloop.bench.loops import COST_LOOPS, available_loops
from monitored_ioloop.bench.net import (
    FASTAPI,
    HTTP,
    HTTP_STYLES,
    STYLES,
    fastapi_available,
    http_available,
)
from monitored_ioloop.bench.workloads import SIZES, WORKLOADS


class Sample(NamedTuple):
    rate: float
    p50: Optional[float] = None
    p99: Optional[float] = None
    #: The server's CPU time per request (microseconds), user and system; network workloads
    #: on Linux only.
    user_us: Optional[float] = None
    system_us: Optional[float] = None

    @property
    def cpu_us(self) -> Optional[float]:
        if self.user_us is None or self.system_us is None:
            return None
        return self.user_us + self.system_us


class Echo(NamedTuple):
    style: str
    size: int

    @property
    def name(self) -> str:
        if self.style == HTTP:
            return "http-uvicorn"
        if self.style == FASTAPI:
            return "http-fastapi"
        size = f"{self.size // 1024}KiB"
        return f"echo-{self.style}-{size}"


def _python(*args: str, env: Optional[Dict[str, str]] = None) -> List[str]:
    return [sys.executable, "-m", *args]


def _two_cores() -> bool:
    return hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1


def _measure_micro(loop: str, workload: str, n: int) -> Sample:
    env = dict(os.environ)
    if _two_cores():
        env["MONITORED_IOLOOP_BENCH_CPU"] = str(max(os.sched_getaffinity(0)))
    out = subprocess.run(
        _python("monitored_ioloop.bench.worker", loop, workload, str(n)),
        check=True, capture_output=True, text=True, env=env,
    )
    seconds = float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
    return Sample(n / seconds)


def _measure_echo(loop: str, echo: Echo, seconds: float) -> Sample:
    server = subprocess.Popen(
        _python("monitored_ioloop.bench.net", "serve", loop, echo.style),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        if not port:
            raise RuntimeError(f"the {loop} echo server did not start")
        out = subprocess.run(
            _python(
                "monitored_ioloop.bench.net", "load", port, str(echo.size), "8", str(seconds),
                HTTP if echo.style in HTTP_STYLES else "echo", str(server.pid),
            ),
            check=True, capture_output=True, text=True, timeout=60 + seconds * 4,
        )
    finally:
        server.kill()
        server.wait()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return Sample(
        result["requests_per_second"], result["p50"], result["p99"],
        result.get("server_user_us"), result.get("server_system_us"),
    )


def run(
    loops: List[str],
    micro: List[str],
    echoes: List[Echo],
    rounds: int,
    quick: bool,
    echo_seconds: float,
) -> Dict[str, Any]:
    names = micro + [e.name for e in echoes]
    samples: Dict[str, Dict[str, List[Sample]]] = {w: {lp: [] for lp in loops} for w in names}
    total = rounds * len(loops) * len(names)
    done = 0
    live = sys.stderr.isatty()
    started = time.monotonic()
    for r in range(rounds):
        order = loops if r % 2 == 0 else list(reversed(loops))
        if not live:
            print(f"round {r + 1}/{rounds}: {', '.join(order)}", file=sys.stderr, flush=True)
        jobs: List[Any] = [(w, None) for w in micro] + [(e.name, e) for e in echoes]
        for name, echo in jobs:
            for loop in order:
                done += 1
                if live:
                    elapsed = time.monotonic() - started
                    status = f"[{done}/{total}, {elapsed:.0f}s] round {r + 1}: {name} on {loop}"
                    print(f"\r{status:<78}", end="", file=sys.stderr, flush=True)
                try:
                    if echo is None:
                        sample = _measure_micro(loop, name, SIZES[name][1 if quick else 0])
                    else:
                        sample = _measure_echo(loop, echo, echo_seconds)
                except (subprocess.SubprocessError, RuntimeError, ValueError, KeyError) as exc:
                    # A loop that cannot run a workload (rloop lacks some APIs) gets "n/a" there,
                    # and the run goes on.
                    print(f"\n{name} on {loop} failed: {exc}", file=sys.stderr, flush=True)
                    sample = Sample(math.nan)
                samples[name][loop].append(sample)
    if live:
        print(f"\r{'':<78}\r", end="", file=sys.stderr, flush=True)
    results: Dict[str, Any] = {"rounds": rounds, "quick": quick, "loops": loops, "workloads": {}}
    for name in names:
        row: Dict[str, Any] = {}
        for loop in loops:
            taken = samples[name][loop]
            ok = [s for s in taken if not math.isnan(s.rate)]
            entry: Dict[str, Any] = {
                "ops_per_second": statistics.median(s.rate for s in ok) if ok else None,
                "samples": [s.rate for s in taken],
            }
            if ok and ok[0].p50 is not None:
                entry["p50"] = statistics.median(s.p50 for s in ok if s.p50 is not None)
                entry["p99"] = statistics.median(s.p99 for s in ok if s.p99 is not None)
            cpu = [(s.user_us, s.system_us) for s in ok if s.user_us is not None
                   and s.system_us is not None]
            if cpu:
                entry["server_cpu_us"] = statistics.median(u + k for u, k in cpu)
                entry["server_user_us"] = statistics.median(u for u, _ in cpu)
                entry["server_system_us"] = statistics.median(k for _, k in cpu)
            if "uvloop" in loops:
                ratios = _ratios(taken, samples[name]["uvloop"])
                entry["speed_vs_uvloop"] = statistics.median(ratios) if ratios else None
                cpu_ratios = _cpu_ratios(taken, samples[name]["uvloop"])
                if cpu_ratios:
                    entry["cpu_vs_uvloop"] = statistics.median(cpu_ratios)
            row[loop] = entry
        results["workloads"][name] = {"loops": row}
    return results


def _ratios(a: List[Sample], b: List[Sample]) -> List[float]:
    """Per-round speed ratios a/b, leaving out rounds where either failed."""
    return [x.rate / y.rate for x, y in zip(a, b) if x.rate > 0 and y.rate > 0]


def _cpu_ratios(a: List[Sample], b: List[Sample]) -> List[float]:
    """Per-round ratios of the server's CPU time per request, a/b (lower is cheaper)."""
    return [x.cpu_us / y.cpu_us for x, y in zip(a, b) if x.cpu_us and y.cpu_us]


#: What each loop of the monitoring-cost table adds to the plain native loop.
COST_LABELS = {
    "native-bare": "aggregates (on vs off)",
    "native+min-wall": "monitor >= 10 ms",
    "native+watchdog": "watchdog",
    "native+monitor": "monitor every dispatch",
}


def monitoring_costs(results: Dict[str, Any], loops: List[str]) -> Dict[str, Dict[str, float]]:
    """Per workload, the median per-round speed of the plain native loop with each monitoring
    feature relative to without it: the always-on aggregates (native vs native-bare), a monitor
    callback with monitor_min_wall_time=0.01, the watchdog, a monitor on every dispatch."""
    costs: Dict[str, Dict[str, float]] = {}
    if "native" not in loops:
        return costs
    for workload, data in results["workloads"].items():
        native = data["loops"]["native"]["samples"]
        row = {}
        for loop in COST_LOOPS:
            if loop not in loops:
                continue
            other = data["loops"][loop]["samples"]
            pairs = [(n, o) for n, o in zip(native, other) if n > 0 and o > 0]
            if loop == "native-bare":
                ratios = [n / o for n, o in pairs]
            else:
                ratios = [o / n for n, o in pairs]
            if ratios:
                row[loop] = statistics.median(ratios)
        costs[workload] = row
    return costs


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    """The lines of a plain-text table: the header, a rule, then the rows, columns padded."""
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return out


def render_costs(costs: Dict[str, Dict[str, float]]) -> str:
    columns = [c for c in COST_LOOPS if any(c in row for row in costs.values())]
    if not columns:
        return ""
    header = ["workload"] + [COST_LABELS[c] for c in columns]
    lines = [
        [workload] + [f"{(row[c] - 1) * 100:+.1f}%" if c in row else "" for c in columns]
        for workload, row in costs.items()
    ]
    title = ("Monitoring cost (speed of the native loop with each feature against without it;"
             " median per-round ratio, negative = slower)")
    return "\n".join([title] + _table(header, lines))


def render_server_cpu(results: Dict[str, Any], loops: List[str]) -> str:
    """The server's CPU time per request in each network workload, user + system."""
    rows = []
    for workload, data in results["workloads"].items():
        entries = [data["loops"][loop] for loop in loops]
        if not any("server_cpu_us" in e for e in entries):
            continue
        cells = [workload]
        for entry in entries:
            if "server_cpu_us" not in entry:
                cells.append("n/a")
                continue
            cell = f"{entry['server_user_us']:.1f} + {entry['server_system_us']:.1f} us"
            if "cpu_vs_uvloop" in entry:
                cell += f" {entry['cpu_vs_uvloop']:.2f}x"
            cells.append(cell)
        rows.append(cells)
    if not rows:
        return ""
    title = ("Server CPU per request (user + system time, median over rounds; Nx: median"
             " per-round ratio to uvloop, lower is cheaper)")
    return "\n".join([title] + _table(["workload"] + loops, rows))


def render(results: Dict[str, Any], loops: List[str]) -> str:
    has_uvloop = "uvloop" in loops
    loops = [lp for lp in loops if lp not in COST_LOOPS or lp == "native+monitor"]
    header = ["workload"] + loops
    lines = []
    for workload, data in results["workloads"].items():
        cells = [workload]
        for loop in loops:
            entry = data["loops"][loop]
            if entry["ops_per_second"] is None:
                cells.append("n/a")
                continue
            cell = f"{entry['ops_per_second'] / 1e3:,.0f}k/s"
            if has_uvloop and entry.get("speed_vs_uvloop") is not None:
                cell += f" {entry['speed_vs_uvloop']:.2f}x"
            if "p99" in entry:
                cell += f" p50 {entry['p50'] * 1e6:.0f}/p99 {entry['p99'] * 1e6:.0f}us"
            cells.append(cell)
        lines.append(cells)
    out = _table(header, lines)
    notes = [
        "ops/s (echo, http: requests/s over 8 connections): median over rounds, each "
        "measurement in a fresh process. http-uvicorn: uvicorn serving a hello-world ASGI "
        "app; http-fastapi: a FastAPI endpoint returning a JSON model.",
    ]
    if has_uvloop:
        notes.append("Nx: median per-round speed relative to uvloop (higher is faster).")
    else:
        notes.append("Install monitored_ioloop[uvloop] for ratios to uvloop.")
    notes.append(
        "native+monitor and monitored-asyncio call a trivial Python monitor after every callback."
    )
    cpu = render_server_cpu(results, loops)
    costs = render_costs(monitoring_costs(results, list(results.get("loops", []))))
    extra = [table for table in (cpu, costs) if table]
    return "\n".join(out + [""] + notes + [line for t in extra for line in ("", t)])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitored_ioloop.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (~90 s)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 4, quick 2)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--loops", nargs="+", choices=available_loops(), default=None)
    parser.add_argument("--micro", nargs="*", choices=list(WORKLOADS), default=None,
                        help="micro workloads (default: all)")
    parser.add_argument("--echo", nargs="*", default=None, metavar="STYLE:KIB",
                        help=f"network workloads, e.g. protocol:1 streams:100 http:0 "
                        f"(styles: {STYLES + HTTP_STYLES})")
    plot.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.results:
        results = plot.load(args.results)
        print("\n".join(plot.finish(args, results)))
        return 0
    loops = args.loops or available_loops()
    micro = list(WORKLOADS) if args.micro is None else args.micro
    if args.echo is not None:
        echoes = [Echo(s, int(k) * 1024) for s, k in (e.split(":") for e in args.echo)]
    elif args.quick:
        echoes = [Echo("protocol", 1024), Echo("protocol", 100 * 1024), Echo("streams", 1024)]
    else:
        echoes = [Echo(style, kib * 1024) for style in STYLES for kib in (1, 10, 100)]
    if args.echo is None and http_available():
        echoes.append(Echo(HTTP, 0))
    if args.echo is None and fastapi_available():
        echoes.append(Echo(FASTAPI, 0))
    rounds = args.rounds or (2 if args.quick else 4)
    echo_seconds = 0.4 if args.quick else 1.5
    results = run(loops, micro, echoes, rounds, args.quick, echo_seconds)
    results["monitoring_cost"] = monitoring_costs(results, loops)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(render(results, loops))
    for line in plot.finish(args, results):
        print(line, file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
