"""One measurement in a fresh process: ``python -m monitored_ioloop.bench.worker LOOP WORKLOAD N``
prints a JSON object with the seconds the workload took (after a warm-up run)."""

from __future__ import annotations

import json
import os
import sys

from monitored_ioloop.bench.loops import LOOPS
from monitored_ioloop.bench.workloads import WORKLOADS


def main(argv: list[str]) -> int:
    loop_name, workload_name, n_text = argv
    n = int(n_text)
    cpu = os.environ.get("MONITORED_IOLOOP_BENCH_CPU")
    if cpu is not None and hasattr(os, "sched_setaffinity") and workload_name != "threadsafe":
        os.sched_setaffinity(0, {int(cpu)})
    workload = WORKLOADS[workload_name]
    warmup_loop = LOOPS[loop_name]()
    workload(warmup_loop, max(1, n // 10))
    warmup_loop.close()
    loop = LOOPS[loop_name]()
    seconds = workload(loop, n)
    loop.close()
    print(json.dumps({"loop": loop_name, "workload": workload_name, "n": n, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
