"""The original package's helpers for naming a handle or a callback, kept under their original
names; the loops themselves name callbacks natively (see ``_names.callback_pretty_name``)."""

from __future__ import annotations

from asyncio import tasks
from typing import Any, Callable

__all__ = ["pretty_callback_name", "pretty_format_handle"]


def pretty_format_handle(handle: Any) -> str:
    """The ``repr`` of the task a handle steps, or of the handle itself."""
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, tasks.Task):
        return repr(owner)
    return repr(handle)


def pretty_callback_name(callback: Callable[..., Any]) -> str:
    """A callback's qualified name (for a task step: the task's), else its ``repr``."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, tasks.Task):
        return getattr(owner, "__qualname__", None) or repr(owner)
    return getattr(callback, "__qualname__", None) or repr(callback)
