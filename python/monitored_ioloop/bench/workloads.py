"""Micro workloads: each runs `n` operations on a loop and returns the seconds they took,
measured inside the process around the work alone."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Dict


def call_soon_chain(loop: asyncio.AbstractEventLoop, n: int) -> float:
    """A chain of callbacks, each scheduling the next: call_soon plus one dispatch."""
    remaining = n

    def step() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining:
            loop.call_soon(step)
        else:
            loop.stop()

    loop.call_soon(step)
    start = time.perf_counter()
    loop.run_forever()
    return time.perf_counter() - start


def timers(loop: asyncio.AbstractEventLoop, n: int) -> float:
    """Many timers with spread deadlines (0-2 ms), all firing."""
    fired = 0

    def on_timer() -> None:
        nonlocal fired
        fired += 1
        if fired == n:
            loop.stop()

    start = time.perf_counter()
    for i in range(n):
        loop.call_later((i % 200) * 1e-5, on_timer)
    loop.run_forever()
    return time.perf_counter() - start


def timer_cancels(loop: asyncio.AbstractEventLoop, n: int) -> float:
    """Schedule far timers and cancel them all (a timeout that is never hit)."""
    start = time.perf_counter()
    handles = [loop.call_later(3600.0, time.time) for _ in range(n)]
    for handle in handles:
        handle.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    return time.perf_counter() - start


def sleep0_pingpong(loop: asyncio.AbstractEventLoop, n: int) -> float:
    """Two tasks taking turns with ``await asyncio.sleep(0)``."""

    async def player() -> None:
        for _ in range(n // 2):
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(player(), player())

    start = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - start


def future_roundtrips(loop: asyncio.AbstractEventLoop, n: int) -> float:
    """A task awaiting futures another callback resolves: create_future + set_result + wakeup."""

    async def main() -> None:
        for _ in range(n):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, None)
            await fut

    start = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - start


def gather_tasks(loop: asyncio.AbstractEventLoop, n: int) -> float:
    """create_task + gather of many trivial coroutines."""

    async def trivial(i: int) -> int:
        return i

    async def main() -> None:
        await asyncio.gather(*[loop.create_task(trivial(i)) for i in range(n)])

    start = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - start


def threadsafe_calls(loop: asyncio.AbstractEventLoop, n: int) -> float:
    """call_soon_threadsafe from another thread, the loop running them."""
    received = 0

    def on_call() -> None:
        nonlocal received
        received += 1
        if received == n:
            loop.stop()

    def producer() -> None:
        for _ in range(n):
            loop.call_soon_threadsafe(on_call)

    thread = threading.Thread(target=producer)
    start = time.perf_counter()
    thread.start()
    loop.run_forever()
    elapsed = time.perf_counter() - start
    thread.join()
    return elapsed


WORKLOADS: Dict[str, Callable[[asyncio.AbstractEventLoop, int], float]] = {
    "call_soon": call_soon_chain,
    "timers": timers,
    "timer_cancel": timer_cancels,
    "sleep0": sleep0_pingpong,
    "future": future_roundtrips,
    "gather": gather_tasks,
    "threadsafe": threadsafe_calls,
}

# Operations per measurement: (full, quick).
SIZES: Dict[str, tuple[int, int]] = {
    "call_soon": (400_000, 150_000),
    "timers": (100_000, 40_000),
    "timer_cancel": (200_000, 80_000),
    "sleep0": (200_000, 80_000),
    "future": (100_000, 40_000),
    "gather": (50_000, 20_000),
    "threadsafe": (100_000, 40_000),
}
