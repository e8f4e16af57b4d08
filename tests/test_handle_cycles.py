"""Handles are not tracked by the cycle collector (allocating one costs it nothing), so the loop
must leave no cycle through a handle uncollectable: a one-shot handle lets go of its callable
once it ran, was cancelled or its loop closed; an unclosed loop with pending work is still
collected; and objects reachable through a handle someone holds are never cleared."""

from __future__ import annotations

import asyncio
import gc
import warnings
import weakref
from typing import Any, Optional

import pytest
from monitored_ioloop.loop import Loop

pytestmark = pytest.mark.timeout(30)


class Owner:
    """Keeps the handle of a callback bound to itself: the cycle owner -> handle -> method."""

    def __init__(self, loop: Loop, delay: Optional[float]) -> None:
        self.loop = loop
        if delay is None:
            self.handle: Any = loop.call_soon(self.on_timer)
        else:
            self.handle = loop.call_later(delay, self.on_timer)

    def on_timer(self) -> None:
        pass


def collected(ref: weakref.ReferenceType[Any]) -> bool:
    gc.collect()
    return ref() is None


@pytest.mark.parametrize("delay", [None, 0.0])
def test_a_cycle_through_a_handle_that_ran_is_collected(loop: Loop, delay: Optional[float]) -> None:
    ref = weakref.ref(Owner(loop, delay))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert collected(ref)


@pytest.mark.parametrize("delay", [None, 10.0])
def test_a_cycle_through_a_cancelled_handle_is_collected(
    loop: Loop, delay: Optional[float]
) -> None:
    owner = Owner(loop, delay)
    owner.handle.cancel()
    ref = weakref.ref(owner)
    del owner
    assert collected(ref)


def test_a_cycle_through_a_pending_handle_of_a_closed_loop_is_collected() -> None:
    loop = Loop()
    ref = weakref.ref(Owner(loop, 10.0))
    loop.close()
    assert collected(ref)


def test_a_pending_handle_keeps_its_callback_alive_while_the_loop_runs(loop: Loop) -> None:
    ref = weakref.ref(Owner(loop, 0.05))
    assert not collected(ref)
    loop.run_until_complete(asyncio.sleep(0.1))
    assert collected(ref)


@pytest.mark.parametrize("attempt", range(4))
def test_an_unclosed_loop_with_pending_work_is_collected(attempt: int) -> None:
    # Several times over: a timer handle reused from a free list must be tracked like a new one.
    loop = Loop()

    async def forever() -> None:
        await asyncio.sleep(3600)

    task = loop.create_task(forever())
    loop.run_until_complete(asyncio.sleep(0))
    loop.call_soon(lambda: None)
    loop_ref = weakref.ref(loop)
    del loop, task
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert collected(loop_ref)
    assert any(issubclass(w.category, ResourceWarning) for w in caught)


def test_what_a_held_handle_reaches_is_never_cleared() -> None:
    # The user holds a pending handle whose callback leads back to an unclosed, otherwise
    # unreferenced loop: nothing it reaches may be torn down by the collector.
    loop = Loop()
    owner = Owner(loop, 10.0)
    handle = owner.handle
    loop_ref = weakref.ref(loop)
    del loop, owner
    gc.collect()
    assert loop_ref() is not None
    assert handle._callback.__self__.loop is loop_ref()
    assert handle._callback.__self__.handle is handle
    kept = loop_ref()
    assert kept is not None
    handle.cancel()
    kept.close()
