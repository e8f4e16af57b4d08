"""Finds the callback that blocks the loop: run it, and a report names `blocking_handler`.

    python examples/slow_callbacks.py
"""

from __future__ import annotations

import asyncio
import time

from monitored_ioloop.monitored_uvloop import run
from monitored_ioloop.monitoring import IoLoopMonitorState

SLOW = 0.05


def report_slow(state: IoLoopMonitorState) -> None:
    if state.callback_wall_time > SLOW:
        print(
            f"{state.callback_pretty_name} blocked the loop for "
            f"{state.callback_wall_time * 1e3:.1f} ms ({state.loop_handles_count} handles waiting,"
            f" started {state.loop_lag * 1e3:.1f} ms late)"
        )


async def blocking_handler() -> None:
    await asyncio.sleep(0.01)
    time.sleep(0.1)  # a synchronous call in async code: what the monitor is for


async def polite_handler(i: int) -> int:
    await asyncio.sleep(0.01)
    return i


async def main() -> None:
    await asyncio.gather(blocking_handler(), *(polite_handler(i) for i in range(100)))


if __name__ == "__main__":
    run(main(), monitor_callback=report_slow)
