"""The benchmark's command line: rounds of fresh-process measurements, interleaved (A B C, then
C B A), then a table of throughput and median per-round speed ratios to uvloop."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any, Dict, List

from monitored_ioloop.bench.loops import available_loops
from monitored_ioloop.bench.workloads import SIZES, WORKLOADS


def _measure(loop: str, workload: str, n: int) -> float:
    env = dict(os.environ)
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1:
        env["MONITORED_IOLOOP_BENCH_CPU"] = str(max(os.sched_getaffinity(0)))
    out = subprocess.run(
        [sys.executable, "-m", "monitored_ioloop.bench.worker", loop, workload, str(n)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def run(loops: List[str], workloads: List[str], rounds: int, quick: bool) -> Dict[str, Any]:
    times: Dict[str, Dict[str, List[float]]] = {w: {lp: [] for lp in loops} for w in workloads}
    total = rounds * len(loops) * len(workloads)
    done = 0
    live = sys.stderr.isatty()
    for r in range(rounds):
        order = loops if r % 2 == 0 else list(reversed(loops))
        if not live:
            print(f"round {r + 1}/{rounds}: {', '.join(order)}", file=sys.stderr, flush=True)
        for workload in workloads:
            n = SIZES[workload][1 if quick else 0]
            for loop in order:
                done += 1
                if live:
                    status = f"[{done}/{total}] round {r + 1}: {workload} on {loop}"
                    print(f"\r{status:<70}", end="", file=sys.stderr, flush=True)
                times[workload][loop].append(_measure(loop, workload, n))
    if live:
        print(f"\r{'':<70}\r", end="", file=sys.stderr, flush=True)
    results: Dict[str, Any] = {"rounds": rounds, "quick": quick, "workloads": {}}
    for workload in workloads:
        n = SIZES[workload][1 if quick else 0]
        row: Dict[str, Any] = {}
        for loop in loops:
            samples = times[workload][loop]
            entry: Dict[str, Any] = {
                "median_seconds": statistics.median(samples),
                "ops_per_second": n / statistics.median(samples),
                "samples": samples,
            }
            if "uvloop" in loops:
                per_round = [u / t for u, t in zip(times[workload]["uvloop"], samples)]
                entry["speed_vs_uvloop"] = statistics.median(per_round)
            row[loop] = entry
        results["workloads"][workload] = {"n": n, "loops": row}
    return results


def render(results: Dict[str, Any], loops: List[str]) -> str:
    has_uvloop = "uvloop" in loops
    header = ["workload"] + loops
    lines = []
    for workload, data in results["workloads"].items():
        cells = [workload]
        for loop in loops:
            entry = data["loops"][loop]
            cell = f"{entry['ops_per_second'] / 1e3:,.0f}k/s"
            if has_uvloop:
                cell += f" {entry['speed_vs_uvloop']:.2f}x"
            cells.append(cell)
        lines.append(cells)
    widths = [max(len(row[i]) for row in [header] + lines) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines]
    note = (
        "ops/s: median over rounds, each in a fresh process; Nx: median per-round speed "
        "relative to uvloop (higher is faster)."
        if has_uvloop
        else "ops/s: median over rounds (install monitored_ioloop[uvloop] for uvloop ratios)."
    )
    return "\n".join(out) + "\n" + note


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitored_ioloop.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, under a minute")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 2)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--loops", nargs="+", choices=available_loops(), default=None)
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=None)
    args = parser.parse_args(argv)
    loops = args.loops or available_loops()
    workloads = args.workloads or list(WORKLOADS)
    rounds = args.rounds or (2 if args.quick else 4)
    results = run(loops, workloads, rounds, args.quick)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(render(results, loops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
