"""The loop's core behaviour as asyncio defines it: running and stopping, closing, the ready
queue's order, timers, handles, contexts, errors, and the BaseEventLoop parts it inherits."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

import pytest
from monitored_ioloop.loop import Loop
from monitored_ioloop.monitored_uvloop import MonitoredUvloopEventLoopPolicy

pytestmark = pytest.mark.timeout(30)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def noop() -> None:
    pass


# -- running and stopping -----------------------------------------------------------------------


def test_run_forever_returns_after_stop(loop: Loop) -> None:
    ran = []
    loop.call_soon(ran.append, "callback")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["callback"]
    assert not loop.is_running()


def test_run_until_complete_returns_the_result_of_a_future(loop: Loop) -> None:
    future = loop.create_future()
    loop.call_soon(future.set_result, 42)
    assert loop.run_until_complete(future) == 42


def test_run_until_complete_returns_the_result_of_a_coroutine(loop: Loop) -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert loop.run_until_complete(answer()) == 42


def test_run_until_complete_raises_the_exception_of_a_coroutine(loop: Loop) -> None:
    async def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(fail())


def test_stop_before_run_forever_runs_one_iteration(loop: Loop) -> None:
    ran = []

    def first() -> None:
        ran.append("first")
        loop.call_soon(ran.append, "next iteration")

    loop.call_soon(first)
    loop.stop()
    loop.run_forever()
    assert ran == ["first"]
    # What was scheduled during the iteration runs in the next run.
    loop.stop()
    loop.run_forever()
    assert ran == ["first", "next iteration"]


def test_loop_runs_again_after_stop(loop: Loop) -> None:
    ran = []
    for i in range(3):
        loop.call_soon(ran.append, i)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert ran == [0, 1, 2]


def test_is_running_is_true_inside_a_callback(loop: Loop) -> None:
    seen = []
    loop.call_soon(lambda: seen.append(loop.is_running()))
    loop.call_soon(loop.stop)
    assert not loop.is_running()
    loop.run_forever()
    assert seen == [True]
    assert not loop.is_running()


def test_running_an_already_running_loop_raises_runtime_error(loop: Loop) -> None:
    errors = []

    def reenter() -> None:
        try:
            loop.run_forever()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(reenter)
    loop.run_forever()
    assert len(errors) == 1
    assert "already running" in errors[0]


def test_run_until_complete_inside_the_running_loop_raises_runtime_error(loop: Loop) -> None:
    async def inner() -> None:
        pass

    async def outer() -> str:
        coro = inner()
        try:
            loop.run_until_complete(coro)
        except RuntimeError as exc:
            return str(exc)
        finally:
            coro.close()
        return "no error"

    assert "already running" in loop.run_until_complete(outer())


def test_running_while_another_loop_runs_in_the_thread_raises_runtime_error(loop: Loop) -> None:
    other = Loop()
    errors = []

    def run_other() -> None:
        try:
            other.run_forever()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    try:
        loop.call_soon(run_other)
        loop.run_forever()
    finally:
        other.close()
    assert len(errors) == 1
    assert "another loop is running" in errors[0]


def test_get_running_loop_inside_a_callback_returns_the_loop(loop: Loop) -> None:
    seen = []
    loop.call_soon(lambda: seen.append(asyncio.get_running_loop()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [loop]


def test_no_running_loop_after_run_forever_returns(loop: Loop) -> None:
    loop.call_soon(loop.stop)
    loop.run_forever()
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


# -- closing ------------------------------------------------------------------------------------


def test_close_is_idempotent(loop: Loop) -> None:
    loop.close()
    loop.close()
    assert loop.is_closed()


def test_closed_loop_call_soon_raises_runtime_error(loop: Loop) -> None:
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(noop)


def test_closed_loop_call_later_raises_runtime_error(loop: Loop) -> None:
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_later(0.1, noop)


def test_closed_loop_call_at_raises_runtime_error(loop: Loop) -> None:
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_at(loop.time() + 0.1, noop)


def test_closed_loop_call_soon_threadsafe_raises_runtime_error(loop: Loop) -> None:
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon_threadsafe(noop)


def test_closed_loop_run_forever_raises_runtime_error(loop: Loop) -> None:
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_forever()


def test_closed_loop_run_until_complete_raises_runtime_error(loop: Loop) -> None:
    loop.close()

    async def main() -> None:
        pass

    coro = main()
    try:
        with pytest.raises(RuntimeError, match="closed"):
            loop.run_until_complete(coro)
    finally:
        coro.close()


def test_closed_loop_create_task_raises_runtime_error(loop: Loop) -> None:
    loop.close()

    async def main() -> None:
        pass

    coro = main()
    try:
        with pytest.raises(RuntimeError, match="closed"):
            loop.create_task(coro)
    finally:
        coro.close()


def test_close_drops_pending_callbacks_without_running_them(loop: Loop) -> None:
    ran = []
    loop.call_soon(ran.append, "soon")
    loop.call_later(0.01, ran.append, "later")
    loop.close()
    time.sleep(0.02)
    assert ran == []


# -- clock --------------------------------------------------------------------------------------


def test_time_is_consistent_with_time_monotonic(loop: Loop) -> None:
    before = time.monotonic()
    now = loop.time()
    after = time.monotonic()
    # Same clock; allow a microsecond for rounding between the two readings.
    assert before - 1e-6 <= now <= after + 1e-6


def test_time_never_goes_backwards(loop: Loop) -> None:
    readings = [loop.time() for _ in range(10_000)]
    assert readings == sorted(readings)


# -- the ready queue ----------------------------------------------------------------------------


def test_call_soon_runs_callbacks_in_fifo_order(loop: Loop) -> None:
    ran: list[int] = []
    for i in range(100):
        loop.call_soon(ran.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == list(range(100))


def test_call_soon_passes_positional_arguments(loop: Loop) -> None:
    got = []
    loop.call_soon(lambda *args: got.append(args), 1, "two", None)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert got == [(1, "two", None)]


def test_callbacks_scheduled_during_an_iteration_run_in_the_next_one(loop: Loop) -> None:
    ran = []

    def first() -> None:
        ran.append("first")
        loop.call_soon(ran.append, "scheduled by first")

    loop.call_soon(first)
    loop.call_soon(ran.append, "second")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # stop() ends the run after the current iteration, so the callback first scheduled waits.
    assert ran == ["first", "second"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["first", "second", "scheduled by first"]


def test_cancelled_handle_never_runs(loop: Loop) -> None:
    ran = []
    handle = loop.call_soon(ran.append, "cancelled")
    loop.call_soon(ran.append, "kept")
    handle.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["kept"]


def test_handle_cancelled_by_an_earlier_callback_of_the_same_iteration_never_runs(
    loop: Loop,
) -> None:
    ran = []
    handles = []
    loop.call_soon(lambda: handles[0].cancel())
    handles.append(loop.call_soon(ran.append, "cancelled"))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == []


def test_cancelled_timer_never_runs(loop: Loop) -> None:
    ran = []
    timer = loop.call_later(0.01, ran.append, "cancelled")
    timer.cancel()
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    assert ran == []


# -- handles ------------------------------------------------------------------------------------


def test_handle_cancel_sets_cancelled(loop: Loop) -> None:
    handle = loop.call_soon(noop)
    assert not handle.cancelled()
    handle.cancel()
    assert handle.cancelled()


def test_handle_cancel_twice_is_harmless(loop: Loop) -> None:
    handle = loop.call_soon(noop)
    handle.cancel()
    handle.cancel()
    assert handle.cancelled()
    assert loop.pending_handles_count() == 0


def test_handles_cancelled_after_their_loop_is_gone_count_nowhere() -> None:
    # Handles count their cancellation through their loop's slot in a shared table; a slot
    # freed by a loop that is gone goes to the next loop made, which must not see the old
    # loop's handles' cancellations.
    old = Loop()
    handle, timer = old.call_soon(noop), old.call_later(10, noop)
    old.close()
    del old
    gc.collect()
    loops = [Loop() for _ in range(3)]
    try:
        for new in loops:
            new.call_soon(noop)
            new.call_later(10, noop)
        handle.cancel()
        timer.cancel()
        assert handle.cancelled() and timer.cancelled()
        assert [new.pending_handles_count() for new in loops] == [2, 2, 2]
        # Their own cancellations are still counted.
        loops[0].call_soon(noop).cancel()
        loops[0].call_later(10, noop).cancel()
        assert loops[0].pending_handles_count() == 2
    finally:
        for new in loops:
            new.close()


def test_timer_handle_when_is_the_scheduled_time(loop: Loop) -> None:
    when = loop.time() + 10
    assert loop.call_at(when, noop).when() == when


def test_call_later_when_is_now_plus_delay(loop: Loop) -> None:
    before = loop.time()
    handle = loop.call_later(5, noop)
    after = loop.time()
    assert before + 5 <= handle.when() <= after + 5


def test_handle_get_context_returns_the_given_context(loop: Loop) -> None:
    context = contextvars.copy_context()
    assert loop.call_soon(noop, context=context).get_context() is context
    assert loop.call_later(1, noop, context=context).get_context() is context


def test_handle_get_context_without_context_is_a_context(loop: Loop) -> None:
    assert isinstance(loop.call_soon(noop).get_context(), contextvars.Context)


def test_handle_repr_contains_the_callback_name(loop: Loop) -> None:
    def some_recognisable_callback() -> None:
        pass

    handle = loop.call_soon(some_recognisable_callback)
    timer = loop.call_later(1, some_recognisable_callback)
    assert "some_recognisable_callback" in repr(handle)
    assert "some_recognisable_callback" in repr(timer)


def test_handle_repr_inside_its_own_callback_names_the_callback(loop: Loop) -> None:
    seen = []
    handles = []

    def look_at_own_handle() -> None:
        seen.append((repr(handles[0]), handles[0]._callback))

    handles.append(loop.call_soon(look_at_own_handle))
    loop.call_soon(loop.stop)
    loop.run_forever()
    ((text, callback),) = seen
    assert "look_at_own_handle" in text
    assert callback is look_at_own_handle


def test_cancelled_handle_repr_says_cancelled(loop: Loop) -> None:
    handle = loop.call_soon(noop)
    handle.cancel()
    assert "cancelled" in repr(handle)


def test_handles_are_weakly_referenceable(loop: Loop) -> None:
    handle = loop.call_soon(noop)
    timer = loop.call_later(1, noop)
    assert weakref.ref(handle)() is handle
    assert weakref.ref(timer)() is timer


# The loop reuses the objects of spent call_soon handles that nothing holds any more; these
# check that no one can tell.


def test_a_weak_reference_to_a_spent_handle_dies_with_it(loop: Loop) -> None:
    died = []
    ref = weakref.ref(loop.call_soon(noop), died.append)
    loop.call_soon(loop.stop)
    loop.run_forever()
    for _ in range(3):
        loop.call_soon(noop)
    assert ref() is None
    assert died == [ref]


def test_a_held_handle_is_never_reused(loop: Loop) -> None:
    def cancelled_one() -> None:
        raise AssertionError("a cancelled handle ran")

    held = [loop.call_soon(noop) for _ in range(3)]
    cancelled = loop.call_soon(cancelled_one)
    cancelled.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    ran = []
    later = [loop.call_soon(ran.append, i) for i in range(10)]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == list(range(10))
    assert all(h is not other for h in held + [cancelled] for other in later)
    assert cancelled.cancelled() and not any(h.cancelled() for h in held + later)
    assert all(h._callback is None for h in held + later)


def test_a_reused_handle_starts_new(loop: Loop) -> None:
    # Spent handles (one cancelled, one whose callback set a context variable) are reused:
    # what their new callbacks see and what they report is that of new handles.
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    contextvars.Context().run(loop.call_soon, var.set, "left behind")
    loop.call_soon(noop).cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    seen = []

    def look() -> None:
        seen.append(var.get())

    renewed = [contextvars.Context().run(loop.call_soon, look) for _ in range(4)]
    loop.call_soon(loop.stop)
    assert not any(h.cancelled() for h in renewed)
    assert all(h._callback is look for h in renewed)
    loop.run_forever()
    assert seen == ["unset"] * 4
    assert all(len(h.get_context()) == 0 for h in renewed)


def test_a_burst_of_spent_handles_is_kept_for_the_next_then_freed_by_halves(loop: Loop) -> None:
    burst = 5000
    for _ in range(burst):
        loop.call_soon(noop)
    loop.call_soon(loop.stop)
    loop.run_forever()
    spare = loop._spare_handles()
    assert spare >= burst
    for _ in range(burst):
        loop.call_soon(noop)
    assert loop._spare_handles() == spare - burst
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert loop._spare_handles() == spare
    # A second and more after the last trim (at the first poll), the pool having met every
    # demand since: half of it is freed, then half of the rest, down to 256.
    loop.run_until_complete(asyncio.sleep(1.1))
    half = spare - (spare - 256 + 1) // 2
    assert half - 10 <= loop._spare_handles() <= half + 10
    loop.run_until_complete(asyncio.sleep(1.1))
    assert loop._spare_handles() <= half - (half - 256) // 2 + 10
    loop.close()
    assert loop._spare_handles() == 0


def test_handles_are_asyncio_handles_duck_typed(loop: Loop) -> None:
    # asyncio code (and uvloop users) call these four; they must all exist.
    timer = loop.call_later(1, noop)
    for name in ("cancel", "cancelled", "when", "get_context"):
        assert callable(getattr(timer, name))


# -- timers -------------------------------------------------------------------------------------


def test_call_later_never_runs_early(loop: Loop) -> None:
    late_by = []
    handles = []

    def check(i: int) -> None:
        late_by.append(loop.time() - handles[i].when())

    for i in range(50):
        handles.append(loop.call_later(0.001 * (i % 10), check, i))
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert len(late_by) == 50
    assert min(late_by) >= 0


def test_call_at_never_runs_early(loop: Loop) -> None:
    late_by = []
    handles = []

    def check(i: int) -> None:
        late_by.append(loop.time() - handles[i].when())

    start = loop.time()
    for i in range(50):
        # Awkward fractions: rounding must never make a timer fire a hair early.
        handles.append(loop.call_at(start + 0.0001 * i + 1e-7 * (i % 7), check, i))
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    assert len(late_by) == 50
    assert min(late_by) >= 0


def test_timers_with_equal_deadlines_run_in_fifo_order(loop: Loop) -> None:
    ran: list[int] = []
    when = loop.time() + 0.01
    for i in range(20):
        loop.call_at(when, ran.append, i)
    loop.call_at(when + 0.01, loop.stop)
    loop.run_forever()
    assert ran == list(range(20))


def test_call_later_runs_in_order_of_delay(loop: Loop) -> None:
    ran = []
    for delay in (0.03, 0.01, 0.02, 0.0):
        loop.call_later(delay, ran.append, delay)
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert ran == [0.0, 0.01, 0.02, 0.03]


def test_call_later_with_a_negative_delay_runs_soon(loop: Loop) -> None:
    ran = []
    loop.call_later(-5, ran.append, "negative")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert ran == ["negative"]


def test_call_at_in_the_past_runs_soon(loop: Loop) -> None:
    ran = []
    loop.call_at(loop.time() - 100, ran.append, "past")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert ran == ["past"]


def test_timer_wakes_an_idle_loop(loop: Loop) -> None:
    ran = []
    loop.call_later(0.02, ran.append, "timer")
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    assert ran == ["timer"]


# -- contexts -----------------------------------------------------------------------------------


def test_callback_sees_the_context_passed_with_context(loop: Loop) -> None:
    context = contextvars.copy_context()
    context.run(request_id.set, "from context")
    seen = []
    loop.call_soon(lambda: seen.append(request_id.get()), context=context)
    loop.call_later(0, lambda: seen.append(request_id.get()), context=context)
    loop.call_soon_threadsafe(lambda: seen.append(request_id.get()), context=context)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == ["from context"] * 3


def test_each_callback_runs_in_its_own_context(loop: Loop) -> None:
    seen = []
    for value in ("a", "b", "c"):
        context = contextvars.Context()
        context.run(request_id.set, value)
        loop.call_soon(lambda: seen.append(request_id.get()), context=context)
    loop.call_soon(lambda: seen.append(request_id.get()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["a", "b", "c", "unset"]


def test_a_callback_setting_a_context_var_does_not_leak_into_the_next(loop: Loop) -> None:
    seen = []
    loop.call_soon(request_id.set, "leaked?")
    loop.call_soon(lambda: seen.append(request_id.get()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["unset"]


def test_call_soon_without_context_copies_the_current_one(loop: Loop) -> None:
    seen = []
    token = request_id.set("at schedule time")
    try:
        loop.call_soon(lambda: seen.append(request_id.get()))
    finally:
        request_id.reset(token)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["at schedule time"]


# A handle scheduled from a context with no variables set runs in an empty context the loop
# reuses while it stays empty; these tests schedule from one (the test runner's own context may
# have variables set) and check that each handle still behaves as if it had its own copy.


def test_handles_scheduled_from_an_empty_context_each_get_their_own(loop: Loop) -> None:
    # Each callback reads the variable and then sets it: none sees another's, whether they
    # run in one iteration or come from timers.
    seen = []

    def read_and_set(value: str) -> None:
        seen.append(request_id.get())
        request_id.set(value)

    def schedule() -> None:
        for value in ("a", "b"):
            loop.call_soon(read_and_set, value)
            loop.call_later(0, read_and_set, value)
        loop.call_later(0.01, loop.stop)

    contextvars.Context().run(schedule)
    loop.run_forever()
    assert seen == ["unset"] * 4
    assert request_id.get() == "unset"


def test_get_context_is_the_context_the_callback_runs_in(loop: Loop) -> None:
    seen: list[str] = []

    def schedule() -> tuple[asyncio.Handle, asyncio.Handle]:
        before = loop.call_soon(lambda: seen.append(request_id.get()))
        after = loop.call_soon(request_id.set, "set by the callback")
        loop.call_soon(loop.stop)
        return before, after

    before, after = contextvars.Context().run(schedule)
    context = before.get_context()
    context.run(request_id.set, "set through get_context")
    assert before.get_context() is context
    loop.run_forever()
    assert seen == ["set through get_context"]
    assert after.get_context()[request_id] == "set by the callback"
    assert after.get_context() is after.get_context()


def test_get_context_from_the_callback_is_the_context_it_runs_in(loop: Loop) -> None:
    seen = []

    def look_at_own_context() -> None:
        request_id.set("set inside")
        seen.append(handles[0].get_context().get(request_id))

    handles = [contextvars.Context().run(loop.call_soon, look_at_own_context)]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["set inside"]


def test_a_reader_keeps_its_context_from_one_run_to_the_next(loop: Loop) -> None:
    import socket

    a, b = socket.socketpair()
    seen = []

    def on_readable() -> None:
        a.recv(16)
        seen.append(request_id.get())
        request_id.set(f"run {len(seen)}")
        if len(seen) == 3:
            loop.remove_reader(a)
            loop.stop()
        else:
            b.send(b"x")

    try:
        contextvars.Context().run(loop.add_reader, a, on_readable)
        b.send(b"x")
        loop.run_forever()
    finally:
        a.close()
        b.close()
    assert seen == ["unset", "run 1", "run 2"]


def test_threadsafe_calls_get_the_calling_threads_context(loop: Loop) -> None:
    seen = []

    def call_from_thread(value: str | None) -> None:
        # A new thread starts in an empty context.
        if value is not None:
            request_id.set(value)
        loop.call_soon_threadsafe(request_id.set, "set by a callback")
        loop.call_soon_threadsafe(lambda: seen.append(request_id.get()))

    for value in (None, "from a thread"):
        thread = threading.Thread(target=call_from_thread, args=(value,))
        thread.start()
        thread.join()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["unset", "from a thread"]


def test_changes_in_the_callers_context_after_scheduling_are_not_seen(loop: Loop) -> None:
    seen = []
    token = request_id.set("before")
    try:
        loop.call_soon(lambda: seen.append(request_id.get()))
        request_id.set("after")
    finally:
        request_id.reset(token)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["before"]


# -- errors in callbacks ------------------------------------------------------------------------


def test_keyboard_interrupt_in_a_callback_propagates_out_of_run_forever(loop: Loop) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()


def test_system_exit_in_a_callback_propagates_out_of_run_forever(loop: Loop) -> None:
    def leave() -> None:
        raise SystemExit(3)

    loop.call_soon(leave)
    with pytest.raises(SystemExit) as info:
        loop.run_forever()
    assert info.value.code == 3


def test_loop_runs_again_after_keyboard_interrupt(loop: Loop) -> None:
    ran = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    loop.call_soon(ran.append, "after interrupt")
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert ran == []
    loop.call_soon(loop.stop)
    loop.run_forever()
    # The callback that had not run yet is kept, and runs first.
    assert ran == ["after interrupt"]
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_exception_in_a_callback_goes_to_the_exception_handler(loop: Loop) -> None:
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def fail() -> None:
        raise ValueError("boom")

    handle = loop.call_soon(fail)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert len(contexts) == 1
    context = contexts[0]
    assert {"message", "exception", "handle"} <= context.keys()
    assert isinstance(context["exception"], ValueError)
    assert context["handle"] is handle
    assert "fail" in context["message"]


def test_loop_goes_on_after_an_exception_in_a_callback(loop: Loop) -> None:
    ran = []
    loop.set_exception_handler(lambda lp, ctx: None)

    def fail() -> None:
        raise ValueError("boom")

    loop.call_soon(fail)
    loop.call_soon(ran.append, "same iteration")
    loop.call_later(0.001, ran.append, "later")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert ran == ["same iteration", "later"]


def test_exception_in_a_timer_goes_to_the_exception_handler(loop: Loop) -> None:
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def fail() -> None:
        raise ValueError("timer boom")

    timer = loop.call_later(0, fail)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert [type(c["exception"]) for c in contexts] == [ValueError]
    assert contexts[0]["handle"] is timer


def test_get_exception_handler_returns_what_was_set(loop: Loop) -> None:
    def handler(lp: Any, ctx: Any) -> None:
        pass

    assert loop.get_exception_handler() is None
    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler


def test_default_exception_handler_logs_the_exception(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    def fail_loudly() -> None:
        raise ValueError("logged boom")

    loop.call_soon(fail_loudly)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_forever()
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert "fail_loudly" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)


def test_exception_handler_that_raises_does_not_stop_the_loop(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    ran = []

    def broken_handler(lp: Any, ctx: Any) -> None:
        raise RuntimeError("handler broke")

    def fail() -> None:
        raise ValueError("boom")

    loop.set_exception_handler(broken_handler)
    loop.call_soon(fail)
    loop.call_soon(ran.append, "after")
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_forever()
    assert ran == ["after"]
    assert any("Unhandled error in exception handler" in r.getMessage() for r in caplog.records)


# -- tasks and the asyncio parts of BaseEventLoop -----------------------------------------------


def test_create_task_with_a_name(loop: Loop) -> None:
    async def work() -> int:
        return 7

    task = loop.create_task(work(), name="worker-1")
    assert task.get_name() == "worker-1"
    assert loop.run_until_complete(task) == 7


@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is 3.11+")
def test_create_task_with_a_context_runs_the_coroutine_in_it(loop: Loop) -> None:
    context = contextvars.Context()
    context.run(request_id.set, "task context")

    async def read() -> str:
        await asyncio.sleep(0)
        return request_id.get()

    task = loop.create_task(read(), context=context)
    assert loop.run_until_complete(task) == "task context"


def test_task_factory_is_used_by_create_task(loop: Loop) -> None:
    created = []

    def factory(lp: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=lp, **kwargs)
        created.append(task)
        return task

    async def work() -> str:
        return "done"

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    task = loop.create_task(work())
    assert created == [task]
    assert loop.run_until_complete(task) == "done"
    # Unset, create_task makes the Task itself again; set again, the factory is back.
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    plain = loop.create_task(work())
    assert created == [task] and type(plain) is asyncio.Task
    assert loop.run_until_complete(plain) == "done"
    loop.set_task_factory(factory)
    again = loop.create_task(work())
    assert created == [task, again]
    assert loop.run_until_complete(again) == "done"
    with pytest.raises(TypeError):
        loop.set_task_factory(1)  # type: ignore[arg-type]
    assert loop.get_task_factory() is factory


def test_methods_without_arguments_take_none(loop: Loop) -> None:
    # time, get_debug and create_future are METH_NOARGS methods put on the class by hand.
    before = time.monotonic()
    assert before <= loop.time() <= time.monotonic()
    assert loop.get_debug() is False
    future = loop.create_future()
    assert isinstance(future, asyncio.Future) and future.get_loop() is loop
    for name in ("time", "get_debug", "create_future"):
        with pytest.raises(TypeError, match="takes no arguments"):
            getattr(loop, name)(1)
        with pytest.raises(TypeError, match="doesn't apply"):
            getattr(Loop, name)(object())


def test_set_debug_changes_get_debug(loop: Loop) -> None:
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_debug_mode_logs_slow_callbacks(loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow_callback() -> None:
        time.sleep(0.02)

    loop.call_soon(slow_callback)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_forever()
    assert any(
        "Executing" in r.getMessage() and "slow_callback" in r.getMessage() for r in caplog.records
    )


def test_shutdown_asyncgens_finalises_an_async_generator(loop: Loop) -> None:
    finalised = []

    async def numbers() -> Any:
        try:
            yield 1
            yield 2
        finally:
            finalised.append(True)

    async def take_first() -> Any:
        gen = numbers()
        value = await gen.__anext__()
        return value, gen

    value, gen = loop.run_until_complete(take_first())
    assert value == 1
    assert finalised == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert finalised == [True]
    del gen


def test_run_in_executor_runs_in_another_thread(loop: Loop) -> None:
    main_thread = threading.get_ident()

    async def main() -> int:
        return await loop.run_in_executor(None, threading.get_ident)

    worker_thread = loop.run_until_complete(main())
    assert worker_thread != main_thread
    loop.run_until_complete(loop.shutdown_default_executor())


def test_shutdown_default_executor_joins_its_threads(loop: Loop) -> None:
    async def main() -> None:
        await loop.run_in_executor(None, time.sleep, 0.01)

    loop.run_until_complete(main())
    executor = loop._default_executor
    assert executor is not None
    loop.run_until_complete(loop.shutdown_default_executor())
    assert all(not t.is_alive() for t in executor._threads)


def test_sleep_on_the_loop_waits_at_least_the_delay(loop: Loop) -> None:
    async def main() -> float:
        start = loop.time()
        await asyncio.sleep(0.02)
        return loop.time() - start

    assert loop.run_until_complete(main()) >= 0.02


def test_loop_is_an_abstract_event_loop(loop: Loop) -> None:
    assert isinstance(loop, asyncio.AbstractEventLoop)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")
def test_asyncio_runner_with_loop_factory_runs_a_coroutine() -> None:
    async def main() -> tuple[int, bool]:
        return 5, isinstance(asyncio.get_running_loop(), Loop)

    with asyncio.Runner(loop_factory=Loop) as runner:
        assert runner.run(main()) == (5, True)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_with_loop_factory_runs_a_coroutine() -> None:
    async def main() -> bool:
        return isinstance(asyncio.get_running_loop(), Loop)

    assert asyncio.run(main(), loop_factory=Loop) is True  # type: ignore[call-arg]


def test_event_loop_policy_makes_asyncio_run_use_the_monitored_loop() -> None:
    reports = []

    async def main() -> type:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    asyncio.set_event_loop_policy(MonitoredUvloopEventLoopPolicy(reports.append))
    try:
        loop_type = asyncio.run(main())
    finally:
        asyncio.set_event_loop_policy(None)
    assert issubclass(loop_type, Loop)
    assert reports, "the policy's monitor callback was never called"


CALIBRATION_SCRIPT = """
import threading, time
from monitored_ioloop.loop import Loop

counted = 0
running = True

def count() -> None:
    global counted
    while running:
        counted += 1

thread = threading.Thread(target=count)
thread.start()
time.sleep(0.05)
before = counted
Loop().close()
after = counted
running = False
thread.join()
print(after - before)
"""


def test_the_first_loop_calibrates_its_clock_without_holding_the_gil() -> None:
    # The first loop of a process calibrates the dispatch clock (at least half a millisecond,
    # far less than the interpreter's 5 ms switch interval): another thread runs meanwhile.
    out = subprocess.run(
        [sys.executable, "-c", CALIBRATION_SCRIPT], capture_output=True, text=True, check=True
    )
    assert int(out.stdout) > 0
