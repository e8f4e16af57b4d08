"""Readable names for the callbacks the loop runs, computed only when a monitor reads them."""

from __future__ import annotations

import asyncio
import functools
from typing import Any


def _task_of(callback: Any) -> Any:
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Future) and hasattr(owner, "get_coro"):
        return owner
    return None


def callback_pretty_name(callback: Any) -> str:
    """``Class.method`` or a function's qualified name; for a task step
    ``"<task name> (<coroutine qualname>)"``, e.g. ``"Task-3 (fetch_user)"``."""
    task = _task_of(callback)
    if task is not None:
        coro = task.get_coro()
        qualname = getattr(coro, "__qualname__", None) or type(coro).__qualname__
        return f"{task.get_name()} ({qualname})"
    if isinstance(callback, functools.partial):
        return f"functools.partial({callback_pretty_name(callback.func)})"
    qualname = getattr(callback, "__qualname__", None)
    if isinstance(qualname, str):
        return qualname
    return type(callback).__qualname__
