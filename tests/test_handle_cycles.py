"""Handles are not tracked by the cycle collector (allocating one costs it nothing), and timer
handles are not while a running loop holds them, so the loop must leave no cycle through a
handle uncollectable: a one-shot handle lets go of its callable once it ran, was cancelled or its
loop closed; a timer handle is tracked again as it leaves a running loop; an unclosed loop with
pending work is still collected; and objects reachable through a handle someone holds are never
cleared."""

from __future__ import annotations

import asyncio
import contextvars
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


HELD: contextvars.ContextVar[Any] = contextvars.ContextVar("HELD")


class ContextHolder:
    """Holds a timer handle whose context holds it back: holder -> handle -> context -> holder,
    a cycle through what a handle keeps after it ran (its context)."""

    handle: Any = None


@pytest.mark.parametrize("cancel", [False, True], ids=["fired", "cancelled"])
def test_a_cycle_through_a_timer_handle_scheduled_by_a_running_loop_is_collected(
    loop: Loop, cancel: bool
) -> None:
    async def main() -> weakref.ReferenceType[ContextHolder]:
        holder = ContextHolder()
        context = contextvars.copy_context()
        context.run(HELD.set, holder)
        holder.handle = loop.call_later(0.0 if not cancel else 0.001, lambda: None, context=context)
        if cancel:
            holder.handle.cancel()
        await asyncio.sleep(0.01)
        return weakref.ref(holder)

    ref = loop.run_until_complete(main())
    assert collected(ref)


def test_an_unclosed_loop_holding_a_timer_handle_in_a_cycle_is_collected() -> None:
    # The handle was scheduled while the loop ran (untracked then) and is still pending when
    # it stops: the loop, the handle and the holder it leads to all go once abandoned.
    loop = Loop()

    async def main() -> weakref.ReferenceType[ContextHolder]:
        running = asyncio.get_running_loop()
        holder = ContextHolder()
        holder.loop = running  # type: ignore[attr-defined]
        context = contextvars.copy_context()
        context.run(HELD.set, holder)
        holder.handle = running.call_later(3600, lambda: None, context=context)
        return weakref.ref(holder)

    ref = loop.run_until_complete(main())
    loop_ref = weakref.ref(loop)
    del loop
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert collected(ref)
        assert collected(loop_ref)
