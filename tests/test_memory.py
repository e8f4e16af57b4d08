"""Long runs do not grow: a million callbacks, a hundred thousand cancelled timers, monitored
dispatches, and two hundred loops created and closed leave memory and descriptors where they
were."""

from __future__ import annotations

import gc
import os
import signal
import sys
import weakref

import pytest
from monitored_ioloop.loop import Loop
from monitored_ioloop.monitoring import IoLoopMonitorState

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self"),
]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
ALLOWED_GROWTH = 20 * 1024 * 1024


def rss_bytes() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def noop() -> None:
    pass


def run_call_soon_batches(loop: Loop, batches: int, batch_size: int) -> None:
    for _ in range(batches):
        for _ in range(batch_size):
            loop.call_soon(noop)
        loop.call_soon(loop.stop)
        loop.run_forever()


def run_call_later_cancel(loop: Loop, batches: int, batch_size: int) -> None:
    for _ in range(batches):
        for _ in range(batch_size):
            loop.call_later(3600, noop).cancel()
        loop.call_soon(loop.stop)
        loop.run_forever()


def test_a_million_call_soon_do_not_grow_memory(loop: Loop) -> None:
    run_call_soon_batches(loop, batches=10, batch_size=10_000)  # warm-up
    before = rss_bytes()
    run_call_soon_batches(loop, batches=100, batch_size=10_000)
    growth = rss_bytes() - before
    assert loop.pending_handles_count() == 0
    assert growth < ALLOWED_GROWTH, f"RSS grew by {growth / 2**20:.1f} MiB"


def test_a_hundred_thousand_cancelled_timers_do_not_grow_memory(loop: Loop) -> None:
    run_call_later_cancel(loop, batches=2, batch_size=10_000)  # warm-up
    before = rss_bytes()
    run_call_later_cancel(loop, batches=10, batch_size=10_000)
    growth = rss_bytes() - before
    assert loop.pending_handles_count() == 0
    assert growth < ALLOWED_GROWTH, f"RSS grew by {growth / 2**20:.1f} MiB"


def test_monitored_dispatches_do_not_grow_memory(loop: Loop) -> None:
    # The monitor's states are refilled when it lets them go and made anew when it keeps them:
    # neither way leaves a figure, a name or a state behind.
    kept: list[object] = []

    def monitor(state: IoLoopMonitorState) -> None:
        assert state.callback_pretty_name
        if len(kept) < 100:
            kept.append(state)
        elif state.loop_handles_count % 7 == 0:
            kept[state.loop_handles_count % 100] = state

    loop.set_monitor_callback(monitor)
    run_call_soon_batches(loop, batches=2, batch_size=10_000)  # warm-up
    gc.collect()
    before = sys.getallocatedblocks()
    run_call_soon_batches(loop, batches=20, batch_size=10_000)
    gc.collect()
    growth = sys.getallocatedblocks() - before
    assert growth < 5_000, f"{growth} more memory blocks after 200,000 monitored dispatches"


class Payload:
    """Something a callback holds on to, to see when the loop lets go of it."""


def test_cancel_releases_the_callback_arguments_at_once(loop: Loop) -> None:
    # As asyncio's Handle.cancel: a cancelled far timer must not pin what it references.
    payload = Payload()
    ref = weakref.ref(payload)
    soon = loop.call_soon(noop, payload)
    later = loop.call_later(3600, noop, payload)
    del payload
    soon.cancel()
    later.cancel()
    assert ref() is None


def test_cancelled_far_timers_are_released_from_the_heap(loop: Loop) -> None:
    # Cancelled timers that never reach the top of the heap must still be let go of.
    handle_refs = []
    for _ in range(10_000):
        handle = loop.call_later(3600, noop)
        handle.cancel()
        handle_refs.append(weakref.ref(handle))
    del handle
    loop.call_soon(loop.stop)
    loop.run_forever()
    gc.collect()
    alive = sum(ref() is not None for ref in handle_refs)
    assert alive < len(handle_refs) // 2


def test_creating_and_closing_loops_does_not_leak_fds() -> None:
    for _ in range(5):  # warm-up
        Loop().close()
    before = open_fds()
    for _ in range(200):
        event_loop = Loop()
        event_loop.call_soon(event_loop.stop)
        event_loop.run_forever()
        event_loop.close()
    assert open_fds() == before


def test_creating_and_closing_loops_with_signal_handlers_does_not_leak_fds() -> None:
    for _ in range(5):  # warm-up
        Loop().close()
    before = open_fds()
    for _ in range(50):
        event_loop = Loop()
        event_loop.add_signal_handler(signal.SIGUSR1, noop)
        event_loop.close()
    assert open_fds() == before
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_closing_a_loop_releases_its_pending_callbacks() -> None:
    event_loop = Loop()
    payload = Payload()
    ref = weakref.ref(payload)
    event_loop.call_soon(noop, payload)
    event_loop.call_later(3600, noop, payload)
    event_loop.call_soon_threadsafe(noop, payload)
    del payload
    event_loop.close()
    gc.collect()
    assert ref() is None


def test_an_unclosed_loop_warns_and_releases_its_fds_when_collected() -> None:
    Loop().close()  # warm-up
    before = open_fds()
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        event_loop = Loop()
        del event_loop
        gc.collect()
    assert open_fds() == before
