"""Shared fixtures: a fresh native loop per test, closed afterwards, and a way to run a
coroutine on it."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest
from monitored_ioloop.loop import Loop

T = TypeVar("T")


@pytest.fixture
def loop() -> Iterator[Loop]:
    """A new ``Loop`` (not set as the current loop), closed when the test ends."""
    event_loop = Loop()
    try:
        yield event_loop
    finally:
        if event_loop.is_running():
            event_loop.stop()
        if not event_loop.is_closed():
            event_loop.close()


@pytest.fixture
def run(loop: Loop) -> Callable[[Awaitable[T]], T]:
    """``run(coro)``: runs a coroutine (or future) on the fixture's loop until it is done."""

    def run_on_loop(awaitable: Awaitable[Any]) -> Any:
        return loop.run_until_complete(awaitable)

    return run_on_loop


def run_callbacks(loop: Loop, *callbacks: Callable[[], object]) -> None:
    """Schedules each callback with ``call_soon``, then one ``stop``, and runs the loop until
    they have all run."""
    for callback in callbacks:
        loop.call_soon(callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
