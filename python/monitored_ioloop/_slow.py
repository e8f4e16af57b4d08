"""Describing slow callbacks, the loop's rare path: the native core calls ``describe`` only for
dispatches at or over ``slow_callback_threshold``, and ``resume_point`` only before the steps of
coroutines that have already had a slow step, so none of this runs for fast dispatches."""

from __future__ import annotations

import dis
import functools
import logging
import re
import types
from typing import Any, Optional

from monitored_ioloop._names import callback_pretty_name, task_of
from monitored_ioloop.monitoring import SlowCallback

logger = logging.getLogger("monitored_ioloop.slow_callbacks")

_DEFAULT_TASK_NAME = re.compile(r"Task-\d+\Z")

ResumePoint = tuple[types.FrameType, int]


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


def resume_point(task: Any) -> Optional[ResumePoint]:
    """The coroutine's frame and the line it will resume from, read before a step runs."""
    frame = _coroutine_frame(task.get_coro())
    if frame is None:
        return None
    return frame, frame.f_lineno


def _code_of(callback: Any) -> Optional[types.CodeType]:
    while isinstance(callback, functools.partial):
        callback = callback.func
    callback = getattr(callback, "__func__", callback)
    code = getattr(callback, "__code__", None)
    return code if isinstance(code, types.CodeType) else None


def _task_location(coro: Any, resume: Optional[ResumePoint]) -> str:
    """``file:first-last``: from the line the step resumed from (the definition's line when
    that was not noted) to the line it suspended at, or finished on."""
    code = _coroutine_code(coro)
    if code is None:
        return ""
    frame_now = _coroutine_frame(coro)
    if resume is not None:
        first = resume[1]
        last = frame_now.f_lineno if frame_now is not None else resume[0].f_lineno
    else:
        first = code.co_firstlineno
        last = frame_now.f_lineno if frame_now is not None else _last_line(code)
    if last is None or last < first:
        last = first
    return f"{code.co_filename}:{first}-{last}"


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


def callable_name(callback: Any) -> str:
    """The name busy time is shown under for a callable without a code object of its own."""
    return callback_pretty_name(callback)
