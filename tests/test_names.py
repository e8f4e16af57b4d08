"""The names a monitor state gives its callback: the native loop names functions, bound methods,
built-ins and task steps itself, and must give exactly what ``monitored_ioloop._names`` gives
for every kind of callable (it hands it the rest)."""

from __future__ import annotations

import asyncio
import functools
import types
from typing import Any, Callable, Iterator

import pytest
from monitored_ioloop import _names
from monitored_ioloop._native import _callback_pretty_name
from monitored_ioloop.loop import Loop
from monitored_ioloop.monitoring import IoLoopMonitorState

pytestmark = pytest.mark.timeout(30)


def plain() -> None:
    pass


class Worker:
    def tick(self) -> None:
        pass

    @classmethod
    def make(cls) -> None:
        pass

    @staticmethod
    def helper() -> None:
        pass

    def __call__(self) -> None:
        pass


class Unnamed:
    """A callable instance whose ``__qualname__`` is not a string."""

    def __init__(self) -> None:
        self.__qualname__: Any = 42

    def __call__(self) -> None:
        pass


def with_fake_owner() -> None:
    pass


with_fake_owner.__self__ = Worker()  # type: ignore[attr-defined]


async def sleeper() -> None:
    await asyncio.sleep(3600)


def nested() -> Callable[[], None]:
    def inner() -> None:
        pass

    return inner


@pytest.fixture
def running_tasks(loop: Loop) -> Iterator[list[asyncio.Task[None]]]:
    tasks = [loop.create_task(sleeper()), loop.create_task(sleeper(), name="named")]
    loop.run_until_complete(asyncio.sleep(0))
    yield tasks
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def callables(tasks: list[asyncio.Task[None]]) -> list[Any]:
    worker = Worker()
    return [
        plain,
        lambda: None,
        nested(),
        worker.tick,
        Worker.make,
        Worker.helper,
        worker,
        Unnamed(),
        len,
        [].append,
        functools.partial(plain),
        functools.partial(worker.tick),
        types.MethodType(plain, worker),
        with_fake_owner,
        tasks[0].cancel,
        tasks[1].get_name,
        print,
    ]


def test_native_names_agree_with_the_python_naming(
    running_tasks: list[asyncio.Task[None]],
) -> None:
    for callback in callables(running_tasks):
        assert _callback_pretty_name(callback) == _names.callback_pretty_name(callback), callback


def test_a_task_renamed_between_steps_is_named_by_its_new_name(loop: Loop) -> None:
    names: list[str] = []

    def monitor(state: IoLoopMonitorState) -> None:
        if state.task_name is not None:
            names.append(state.callback_pretty_name)

    async def renames_itself() -> None:
        await asyncio.sleep(0)
        asyncio.current_task().set_name("renamed")  # type: ignore[union-attr]
        await asyncio.sleep(0)

    loop.set_monitor_callback(monitor)
    loop.run_until_complete(loop.create_task(renames_itself(), name="first"))
    assert names[0].startswith("first (") and names[0].endswith(".renames_itself)")
    assert names[-1].startswith("renamed (")


def test_task_steps_are_named_by_task_and_coroutine(loop: Loop) -> None:
    seen: list[tuple[str, Any]] = []
    loop.set_monitor_callback(lambda s: seen.append((s.callback_pretty_name, s.task_name)))
    loop.run_until_complete(loop.create_task(asyncio.sleep(0), name="napper"))
    assert ("napper (sleep)", "napper") in seen
