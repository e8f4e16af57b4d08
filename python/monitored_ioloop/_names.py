"""Readable names for the callbacks the loop runs, computed only when a monitor reads them."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Optional

from monitored_ioloop._native import StreamCore
from monitored_ioloop._sslproto import SSLProtocol

# Transport callbacks are named after the protocol method they end up calling, so that a read
# shows as "HttpToolsProtocol.data_received", not as the transport's internal reader.
_TRANSPORT_METHODS = {
    "_read_ready": "data_received",
    "_call_connection_lost": "connection_lost",
}


def task_of(callback: Any) -> Any:
    """The task whose step ``callback`` is, else None."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Future) and hasattr(owner, "get_coro"):
        return owner
    return None


def task_name(callback: Any) -> Optional[str]:
    """The name of the task whose step ``callback`` is, else None."""
    task = task_of(callback)
    return None if task is None else str(task.get_name())


def _protocol_method(callback: Any) -> Optional[str]:
    owner: Any
    method: Optional[str]
    if isinstance(callback, StreamCore):
        # The reader of a stream transport: the core itself is the watcher's callback.
        owner, method = callback, "data_received"
    else:
        owner = getattr(callback, "__self__", None)
        method = _TRANSPORT_METHODS.get(getattr(callback, "__name__", ""))
    if method is None or not isinstance(owner, (StreamCore, asyncio.BaseTransport)):
        return None
    protocol_type = getattr(owner, "_protocol_type", None)
    if protocol_type is None:
        protocol = getattr(owner, "_protocol", None)
        if protocol is None:
            return None
        protocol_type = type(protocol)
    if method == "data_received" and issubclass(protocol_type, SSLProtocol):
        # A TLS read ends in the application's protocol: named after it while the connection
        # is open (its SSL protocol knows it).
        app_type = getattr(getattr(owner, "_protocol", None), "_app_protocol_type", None)
        if app_type is not None:
            protocol_type = app_type
    if method == "data_received":
        if issubclass(protocol_type, asyncio.BufferedProtocol):
            method = "buffer_updated"
        elif issubclass(protocol_type, asyncio.DatagramProtocol):
            method = "datagram_received"
    return f"{protocol_type.__qualname__}.{method}"


def callback_pretty_name(callback: Any) -> str:
    """``Class.method`` or a function's qualified name; for a task step
    ``"<task name> (<coroutine qualname>)"``, e.g. ``"Task-3 (fetch_user)"``; for a transport's
    read ``"<Protocol>.data_received"``."""
    task = task_of(callback)
    if task is not None:
        coro = task.get_coro()
        if coro is None:
            return str(task.get_name())
        qualname = getattr(coro, "__qualname__", None) or type(coro).__qualname__
        return f"{task.get_name()} ({qualname})"
    protocol_method = _protocol_method(callback)
    if protocol_method is not None:
        return protocol_method
    if isinstance(callback, functools.partial):
        return f"functools.partial({callback_pretty_name(callback.func)})"
    qualname = getattr(callback, "__qualname__", None)
    if isinstance(qualname, str):
        return qualname
    return type(callback).__qualname__
