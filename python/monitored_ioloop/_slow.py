"""Describing slow callbacks, the loop's rare path: the native core calls ``describe`` only for
dispatches at or over ``slow_callback_threshold``, and ``resume_point`` only before the steps of
coroutines that have already had a slow step, so none of this runs for fast dispatches."""

from __future__ import annotations

import asyncio
import dis
import functools
import logging
import os
import re
import types
from typing import Any, Callable, Optional

from monitored_ioloop._names import callback_pretty_name, task_of
from monitored_ioloop.monitoring import SlowCallback

logger = logging.getLogger("monitored_ioloop.slow_callbacks")

_DEFAULT_TASK_NAME = re.compile(r"Task-\d+\Z")

#: Where a task's coroutine chain stood before a step: each suspended frame, outermost first,
#: with the line it was at.
ResumePoint = list[tuple[types.FrameType, int]]

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep
#: Await chains are followed this deep at most.
_MAX_DEPTH = 64


def _coroutine_frame(coro: Any) -> Optional[types.FrameType]:
    frame = getattr(coro, "cr_frame", None)
    if frame is None:
        frame = getattr(coro, "gi_frame", None)
    return frame if isinstance(frame, types.FrameType) else None


def _coroutine_code(coro: Any) -> Optional[types.CodeType]:
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    return code if isinstance(code, types.CodeType) else None


def _last_line(code: types.CodeType) -> int:
    lines = (line for _, line in dis.findlinestarts(code) if line is not None)
    return max(lines, default=code.co_firstlineno)


def _await_chain(coro: Any) -> list[types.FrameType]:
    """The frames of a suspended coroutine and of what it awaits, outermost first."""
    frames: list[types.FrameType] = []
    while coro is not None and len(frames) < _MAX_DEPTH:
        frame = _coroutine_frame(coro)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def _is_asyncio(frame: types.FrameType) -> bool:
    return frame.f_code.co_filename.startswith(_ASYNCIO_DIR)


def _deepest(frames: list[Any], frame_of: Callable[[Any], types.FrameType]) -> Any:
    """The deepest entry outside asyncio's own code (asyncio's if there is no other)."""
    outside = [f for f in frames if not _is_asyncio(frame_of(f))]
    return (outside or frames)[-1]


def resume_point(task: Any) -> Optional[ResumePoint]:
    """Where the task's await chain stands, read before a step runs."""
    coro = task.get_coro()
    if coro is None:
        return None
    return [(frame, frame.f_lineno) for frame in _await_chain(coro)] or None


def _code_of(callback: Any) -> Optional[types.CodeType]:
    while isinstance(callback, functools.partial):
        callback = callback.func
    callback = getattr(callback, "__func__", callback)
    code = getattr(callback, "__code__", None)
    return code if isinstance(code, types.CodeType) else None


def _span(frame: types.FrameType, first: int) -> str:
    last = frame.f_lineno
    if last is None or last < first:
        last = first
    return f"{frame.f_code.co_filename}:{first}-{last}"


def _task_location(coro: Any, resume: Optional[ResumePoint]) -> str:
    """``file:first-last`` of the deepest frame (outside asyncio) that the step ran in, from
    the line it resumed from to the line it suspended at or finished on; without a noted
    resume point, from the frame's definition. In a web framework that is the application's
    handler, not the server's request coroutine that the task runs."""
    now = _await_chain(coro)
    if resume:
        suspended = {id(f) for f in now}
        still = [(f, line) for f, line in resume if id(f) in suspended]
        # Frames suspended before and after the step: the slow code ran between their lines.
        # If none is (the task finished), the frames that finished keep their last line.
        frame, first = _deepest(still or resume, lambda entry: entry[0])
        return _span(frame, first)
    if now:
        frame = _deepest(now, lambda f: f)
        return _span(frame, frame.f_code.co_firstlineno)
    code = _coroutine_code(coro)
    if code is None:
        return ""
    return f"{code.co_filename}:{code.co_firstlineno}-{_last_line(code)}"


def describe(
    callback: Any,
    kind: str,
    wall_time: float,
    loop_lag: float,
    started_at: float,
    resume: Optional[ResumePoint],
) -> tuple[SlowCallback, str]:
    """The record of a slow dispatch and the name it is counted under (a task step is counted
    under its task's name when the task was named, else under its coroutine's)."""
    name = callback_pretty_name(callback)
    task = task_of(callback)
    task_name: Optional[str] = None
    coroutine: Optional[str] = None
    count_name = name
    if task is not None:
        task_name = task.get_name()
        coro = task.get_coro()
        if coro is not None:
            coroutine = getattr(coro, "__qualname__", None) or type(coro).__qualname__
            location = _task_location(coro, resume)
        else:
            location = ""
        if coroutine is not None and _DEFAULT_TASK_NAME.match(task_name or ""):
            count_name = coroutine
    else:
        code = _code_of(callback)
        location = f"{code.co_filename}:{code.co_firstlineno}" if code is not None else ""
    record = SlowCallback(
        kind=kind,
        name=name,
        task_name=task_name,
        coroutine=coroutine,
        location=location,
        wall_time=wall_time,
        loop_lag=loop_lag,
        started_at=started_at,
    )
    logger.warning(
        "Slow callback %s took %.3f seconds at %s",
        name,
        wall_time,
        location or "an unknown location",
        extra={
            "callback_name": name,
            "task_name": task_name,
            "coroutine": coroutine,
            "location": location,
            "wall_time": wall_time,
            "loop_lag": loop_lag,
            "kind": kind,
        },
    )
    return record, count_name


def code_namer(callback: Any, task: Any, code: types.CodeType) -> Any:
    """What names busy time counted under a code object: the code itself where it knows its
    qualified name (3.11+), else ``(qualified name, code)`` taken from the function or the
    task's coroutine now."""
    if hasattr(code, "co_qualname"):
        return code
    if task is not None:
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", None)
    else:
        func = getattr(callback, "__func__", callback)
        name = getattr(func, "__qualname__", None)
    return (name if isinstance(name, str) else code.co_name, code)


def callable_name(callback: Any) -> str:
    """The name busy time is shown under for a callable without a code object of its own."""
    return callback_pretty_name(callback)
