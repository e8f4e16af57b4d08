"""Wrong arguments and wrong moments: each gets the exception asyncio gives, never a crash."""

from __future__ import annotations

import asyncio
import contextvars
import math
import signal
import threading
from typing import Any

import pytest
from monitored_ioloop.loop import Loop

pytestmark = pytest.mark.timeout(30)


def noop() -> None:
    pass


# -- callbacks that are not callable ------------------------------------------------------------


# -- the scheduling methods' arguments, as asyncio's signatures take them --------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda loop: loop.call_soon(),
        lambda loop: loop.call_soon_threadsafe(),
        lambda loop: loop.call_later(0.1),
        lambda loop: loop.call_at(),
        lambda loop: loop.call_soon(noop, callback=noop),
        lambda loop: loop.call_later(0.1, noop, delay=0.2),
        lambda loop: loop.call_soon(noop, contxt=None),
        lambda loop: loop.call_at(1.0, noop, when=2.0),
    ],
    ids=[
        "call_soon-no-callback", "threadsafe-no-callback", "call_later-no-callback",
        "call_at-nothing", "call_soon-callback-twice", "call_later-delay-twice",
        "call_soon-unknown-keyword", "call_at-when-twice",
    ],
)
def test_scheduling_with_missing_or_extra_arguments_raises_type_error(
    loop: Loop, call: Any
) -> None:
    with pytest.raises(TypeError):
        call(loop)
    assert loop.pending_handles_count() == 0


def test_scheduling_methods_take_their_named_arguments_by_keyword(loop: Loop) -> None:
    ran: list[str] = []
    loop.call_soon(callback=lambda: ran.append("soon"))
    loop.call_soon_threadsafe(callback=lambda: ran.append("threadsafe"))
    loop.call_later(delay=0.001, callback=lambda: ran.append("later"))
    loop.call_at(when=loop.time() + 0.002, callback=lambda: ran.append("at"))
    loop.call_later(0.01, callback=loop.stop)
    loop.run_forever()
    assert ran == ["soon", "threadsafe", "later", "at"]


def test_context_is_recognised_by_value_whatever_string_object_names_it(loop: Loop) -> None:
    # Keyword names built at run time are not interned: each is a new string object.
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    seen: list[str] = []
    contexts = []
    for value in ("first", "second", "third"):
        context = contextvars.Context()
        context.run(request_id.set, value)
        contexts.append(context)
        name = "".join(["con", "text"])
        loop.call_soon(lambda: seen.append(request_id.get()), **{name: context})
    loop.call_soon(noop, **{"".join(["contex", "t"]): contexts[0]})
    with pytest.raises(TypeError):
        loop.call_soon(noop, **{"".join(["contex", "ts"]): contexts[0]})
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["first", "second", "third"]


@pytest.mark.parametrize("not_callable", [None, 1, "noop", object()])
def test_call_soon_rejects_a_non_callable(loop: Loop, not_callable: Any) -> None:
    with pytest.raises(TypeError):
        loop.call_soon(not_callable)


@pytest.mark.parametrize("not_callable", [None, 1, "noop", object()])
def test_call_later_rejects_a_non_callable(loop: Loop, not_callable: Any) -> None:
    with pytest.raises(TypeError):
        loop.call_later(0.1, not_callable)


@pytest.mark.parametrize("not_callable", [None, 1, "noop", object()])
def test_call_at_rejects_a_non_callable(loop: Loop, not_callable: Any) -> None:
    with pytest.raises(TypeError):
        loop.call_at(loop.time() + 0.1, not_callable)


@pytest.mark.parametrize("not_callable", [None, 1, "noop", object()])
def test_call_soon_threadsafe_rejects_a_non_callable(loop: Loop, not_callable: Any) -> None:
    with pytest.raises(TypeError):
        loop.call_soon_threadsafe(not_callable)


def test_rejected_callbacks_leave_nothing_pending(loop: Loop) -> None:
    for schedule in (
        lambda: loop.call_soon(None),
        lambda: loop.call_later(0.1, None),
        lambda: loop.call_at(1.0, None),
        lambda: loop.call_soon_threadsafe(None),
    ):
        with pytest.raises(TypeError):
            schedule()
    assert loop.pending_handles_count() == 0


# -- delays and deadlines -----------------------------------------------------------------------


def test_call_later_with_none_delay_raises_type_error(loop: Loop) -> None:
    with pytest.raises(TypeError):
        loop.call_later(None, noop)


def test_call_later_with_a_string_delay_raises_type_error(loop: Loop) -> None:
    with pytest.raises(TypeError):
        loop.call_later("1", noop)


def test_call_at_with_none_raises_type_error(loop: Loop) -> None:
    with pytest.raises(TypeError):
        loop.call_at(None, noop)


def test_call_at_with_a_string_raises_type_error(loop: Loop) -> None:
    with pytest.raises(TypeError):
        loop.call_at("1", noop)


def test_call_later_with_a_nan_delay_runs_the_callback(loop: Loop) -> None:
    ran = []
    loop.call_later(math.nan, ran.append, "nan")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert ran == ["nan"]


def test_call_at_nan_runs_the_callback(loop: Loop) -> None:
    ran = []
    loop.call_at(math.nan, ran.append, "nan")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert ran == ["nan"]


def test_call_later_with_a_huge_negative_delay_runs_the_callback(loop: Loop) -> None:
    ran = []
    loop.call_later(-1e300, ran.append, "negative")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert ran == ["negative"]


def test_call_later_with_an_infinite_delay_never_runs_and_does_not_block_others(
    loop: Loop,
) -> None:
    ran = []
    loop.call_later(math.inf, ran.append, "never")
    loop.call_later(0.01, ran.append, "soon")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert ran == ["soon"]


def test_call_later_accepts_an_int_delay(loop: Loop) -> None:
    before = loop.time()
    handle = loop.call_later(2, noop)
    assert handle.when() >= before + 2


# -- contexts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_a_context_that_is_not_a_context_raises_type_error(loop: Loop, method: str) -> None:
    with pytest.raises(TypeError):
        getattr(loop, method)(noop, context=123)


def test_call_later_with_a_context_that_is_not_a_context_raises_type_error(loop: Loop) -> None:
    with pytest.raises(TypeError):
        loop.call_later(0.1, noop, context=123)


def test_call_at_with_a_context_that_is_not_a_context_raises_type_error(loop: Loop) -> None:
    with pytest.raises(TypeError):
        loop.call_at(loop.time() + 0.1, noop, context={})


# -- wrong moments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        lambda lp: lp.call_soon(noop),
        lambda lp: lp.call_later(0, noop),
        lambda lp: lp.call_at(0, noop),
        lambda lp: lp.call_soon_threadsafe(noop),
        lambda lp: lp.run_forever(),
        lambda lp: lp.run_until_complete(asyncio.Future(loop=lp)),
    ],
    ids=["call_soon", "call_later", "call_at", "call_soon_threadsafe", "run_forever", "ruc"],
)
def test_calls_on_a_closed_loop_raise_runtime_error(loop: Loop, schedule: Any) -> None:
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        schedule(loop)


def test_close_on_a_running_loop_raises_runtime_error(loop: Loop) -> None:
    errors = []

    def try_close() -> None:
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert len(errors) == 1
    assert "running" in errors[0]
    assert not loop.is_closed()


def test_set_monitor_callback_rejects_a_non_callable(loop: Loop) -> None:
    with pytest.raises(TypeError):
        loop.set_monitor_callback(42)


# -- signal handlers ----------------------------------------------------------------------------


def test_add_signal_handler_rejects_a_coroutine_function(loop: Loop) -> None:
    async def handler() -> None:
        pass

    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, handler)


def test_add_signal_handler_rejects_a_non_int_signal(loop: Loop) -> None:
    with pytest.raises(TypeError):
        loop.add_signal_handler("SIGUSR1", noop)  # type: ignore[arg-type]


def test_add_signal_handler_rejects_an_invalid_signal_number(loop: Loop) -> None:
    with pytest.raises(ValueError):
        loop.add_signal_handler(100_000, noop)


def test_remove_signal_handler_rejects_an_invalid_signal_number(loop: Loop) -> None:
    with pytest.raises(ValueError):
        loop.remove_signal_handler(100_000)


def test_add_signal_handler_for_an_uncatchable_signal_raises_runtime_error(loop: Loop) -> None:
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, noop)
    assert signal.getsignal(signal.SIGKILL) == signal.SIG_DFL


def test_add_signal_handler_on_a_closed_loop_raises_runtime_error(loop: Loop) -> None:
    loop.close()
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, noop)


def test_add_signal_handler_from_a_non_main_thread_raises_runtime_error(loop: Loop) -> None:
    errors: list[BaseException] = []

    def from_thread() -> None:
        try:
            loop.add_signal_handler(signal.SIGUSR1, noop)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    thread = threading.Thread(target=from_thread)
    thread.start()
    thread.join()
    assert [type(e) for e in errors] == [RuntimeError]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


# -- debug mode ---------------------------------------------------------------------------------


def test_debug_mode_call_soon_from_a_foreign_thread_raises_runtime_error(loop: Loop) -> None:
    loop.set_debug(True)
    errors: list[BaseException] = []

    def from_foreign_thread() -> None:
        try:
            loop.call_soon(noop)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=from_foreign_thread).start())
    loop.run_forever()
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "thread" in str(errors[0])


def test_debug_mode_call_later_from_a_foreign_thread_raises_runtime_error(loop: Loop) -> None:
    loop.set_debug(True)
    errors: list[BaseException] = []

    def from_foreign_thread() -> None:
        try:
            loop.call_later(0.1, noop)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=from_foreign_thread).start())
    loop.run_forever()
    assert [type(e) for e in errors] == [RuntimeError]


def test_debug_mode_call_soon_rejects_a_coroutine_function(loop: Loop) -> None:
    loop.set_debug(True)

    async def coroutine_function() -> None:
        pass

    with pytest.raises(TypeError):
        loop.call_soon(coroutine_function)


def test_call_soon_threadsafe_from_a_foreign_thread_is_fine_in_debug_mode(loop: Loop) -> None:
    loop.set_debug(True)
    ran = []

    def from_foreign_thread() -> None:
        loop.call_soon_threadsafe(ran.append, "ok")
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=from_foreign_thread).start())
    loop.run_forever()
    assert ran == ["ok"]


def test_run_until_complete_rejects_a_non_awaitable(loop: Loop) -> None:
    with pytest.raises(TypeError):
        loop.run_until_complete(42)  # type: ignore[arg-type]


def test_run_until_complete_with_a_future_of_another_loop_raises_value_error(
    loop: Loop,
) -> None:
    other = asyncio.new_event_loop()
    try:
        future = other.create_future()
        with pytest.raises(ValueError):
            loop.run_until_complete(future)
    finally:
        other.close()
