"""call_soon_threadsafe: every call from every thread runs exactly once, and a call wakes a
loop that is waiting with nothing to do."""

from __future__ import annotations

import collections
import threading
import time

import pytest
from monitored_ioloop.loop import Loop

pytestmark = pytest.mark.timeout(30)

THREADS = 8
CALLS_PER_THREAD = 10_000


def test_every_threadsafe_call_from_many_threads_runs_exactly_once(loop: Loop) -> None:
    runs: collections.Counter[tuple[int, int]] = collections.Counter()
    done_threads = []
    start = threading.Barrier(THREADS)

    def record(thread_no: int, call_no: int) -> None:
        runs[(thread_no, call_no)] += 1

    def finished() -> None:
        done_threads.append(1)
        if len(done_threads) == THREADS:
            loop.stop()

    def producer(thread_no: int) -> None:
        start.wait()
        for call_no in range(CALLS_PER_THREAD):
            loop.call_soon_threadsafe(record, thread_no, call_no)
        loop.call_soon_threadsafe(finished)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        loop.run_forever()
    finally:
        for thread in threads:
            thread.join()
    assert len(runs) == THREADS * CALLS_PER_THREAD
    assert set(runs.values()) == {1}
    per_thread = collections.Counter(thread_no for thread_no, _ in runs)
    assert per_thread == {n: CALLS_PER_THREAD for n in range(THREADS)}


def test_threadsafe_calls_from_one_thread_keep_their_order(loop: Loop) -> None:
    ran: list[int] = []

    def producer() -> None:
        for i in range(1000):
            loop.call_soon_threadsafe(ran.append, i)
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=producer)
    thread.start()
    loop.run_forever()
    thread.join()
    assert ran == list(range(1000))


def test_call_soon_threadsafe_on_the_loop_thread_keeps_fifo_order_with_call_soon(
    loop: Loop,
) -> None:
    ran = []
    loop.call_soon_threadsafe(ran.append, "threadsafe, first")
    loop.call_soon(ran.append, "call_soon, second")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert ran == ["threadsafe, first", "call_soon, second"]


def test_threadsafe_call_wakes_an_idle_fresh_loop_promptly(loop: Loop) -> None:
    # Nothing ready, no timers: the loop waits for I/O with no timeout until woken.
    woken_after = []

    def wake_later() -> None:
        time.sleep(0.1)
        sent = time.monotonic()
        loop.call_soon_threadsafe(lambda: woken_after.append(time.monotonic() - sent))
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=wake_later)
    thread.start()
    loop.run_forever()
    thread.join()
    assert len(woken_after) == 1
    assert woken_after[0] < 0.05


def test_threadsafe_call_wakes_a_loop_idle_after_running_work(loop: Loop) -> None:
    async def warm_up() -> None:
        import asyncio

        await asyncio.sleep(0.001)

    loop.run_until_complete(warm_up())
    woken_after = []

    def wake_later() -> None:
        time.sleep(0.1)
        sent = time.monotonic()
        loop.call_soon_threadsafe(lambda: woken_after.append(time.monotonic() - sent))
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=wake_later)
    thread.start()
    loop.run_forever()
    thread.join()
    assert len(woken_after) == 1
    assert woken_after[0] < 0.05


def test_every_threadsafe_call_after_the_last_one_ran_wakes_the_idle_loop_again(
    loop: Loop,
) -> None:
    # A call made while a wake-up is still on its way sends none of its own; once that
    # wake-up has been delivered, the next call must send again, every time.
    rounds = 50
    ran = threading.Event()
    woken = []

    def on_call(round_no: int) -> None:
        woken.append(round_no)
        ran.set()

    def producer() -> None:
        for round_no in range(rounds):
            ran.clear()
            loop.call_soon_threadsafe(on_call, round_no)
            if not ran.wait(5):
                break
            time.sleep(0.002)  # the loop goes back to waiting, with nothing to do
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=producer)
    thread.start()
    loop.run_forever()
    thread.join()
    assert woken == list(range(rounds))


def test_stop_from_another_thread_via_call_soon_threadsafe_ends_run_forever(loop: Loop) -> None:
    loop_started = threading.Event()
    loop.call_soon(loop_started.set)

    def stopper() -> None:
        loop_started.wait()
        time.sleep(0.05)
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=stopper)
    thread.start()
    start = time.monotonic()
    loop.run_forever()
    elapsed = time.monotonic() - start
    thread.join()
    assert not loop.is_running()
    assert elapsed < 1.0


def test_stop_called_directly_from_another_thread_ends_an_idle_loop(loop: Loop) -> None:
    loop_started = threading.Event()
    loop.call_soon(loop_started.set)

    def stopper() -> None:
        loop_started.wait()
        time.sleep(0.05)
        loop.stop()

    thread = threading.Thread(target=stopper)
    thread.start()
    start = time.monotonic()
    loop.run_forever()
    elapsed = time.monotonic() - start
    thread.join()
    assert elapsed < 1.0


def test_loop_runs_in_a_thread_other_than_the_main_one() -> None:
    results = []

    def run_in_thread() -> None:
        loop = Loop()
        try:
            loop.call_soon(results.append, threading.current_thread().name)
            loop.call_soon(loop.stop)
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run_in_thread, name="loop-thread")
    thread.start()
    thread.join()
    assert results == ["loop-thread"]
