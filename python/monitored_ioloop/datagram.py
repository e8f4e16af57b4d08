"""UDP (and unix datagram) transports: asyncio's selector datagram transport over the native fd
watchers, with uvloop's rules where the two differ: ``sendto`` takes only IP literals of the
socket's family (a host name would need a blocking DNS lookup: ValueError), a ``sendto`` after
close is counted and dropped (never an AttributeError), and the protocol's callbacks run in
the context current when the endpoint was created."""

from __future__ import annotations

import contextvars
import socket
from asyncio import constants, selector_events
from asyncio.log import logger
from typing import Any, Optional

__all__ = ["DatagramTransport"]


def _is_ip_literal(family: int, host: Any) -> bool:
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    if family == socket.AF_INET6:
        host = host.partition("%")[0]  # a scope id (fe80::1%eth0) is not part of the address
    try:
        socket.inet_pton(family, host)
    except (OSError, ValueError):
        return False
    return True


class DatagramTransport(selector_events._SelectorDatagramTransport):  # type: ignore[name-defined,misc]
    """asyncio's datagram transport, with uvloop's address checks and protocol contexts."""

    def __init__(
        self,
        loop: Any,
        sock: socket.socket,
        protocol: Any,
        address: Any = None,
        waiter: Optional[Any] = None,
        extra: Optional[dict[str, Any]] = None,
    ) -> None:
        # Every entry point runs asyncio's code in a copy of this context, so whatever it
        # schedules (connection_lost, the writer that drains the buffer) runs in it too.
        self._context = contextvars.copy_context()
        super().__init__(loop, sock, protocol, address, waiter, extra)

    def _check_address(self, addr: Any) -> None:
        family = self._sock.family
        if family not in (socket.AF_INET, socket.AF_INET6):
            return
        if not isinstance(addr, tuple) or len(addr) < 2:
            return  # asyncio's own checks report it
        host = addr[0]
        if family == socket.AF_INET and host in ("<broadcast>", b"<broadcast>"):
            return
        if not _is_ip_literal(family, host):
            # uvloop's message: sendto never resolves names (that would block the loop).
            raise ValueError(f"{addr!r}: socket family mismatch or a DNS lookup is required")

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if not data:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost:
            # Closed (asyncio 3.11+ only checks this for connected endpoints, and would then
            # reach a socket that is gone).
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if addr is not None and not self._address:
            self._check_address(addr)
        elif addr is None and not self._address and not self._buffer:
            # A socket connected without remote_addr= (a socketpair, say): uvloop sends on
            # it; asyncio would pass None to sendto() and fail.
            try:
                self._sock.send(data)
            except OSError as exc:  # a full buffer too: a datagram is sent whole or not
                self._context.copy().run(self._protocol.error_received, exc)
            return
        self._context.copy().run(super().sendto, data, addr)

    def close(self) -> None:
        self._context.copy().run(super().close)

    def abort(self) -> None:
        self._context.copy().run(super().abort)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        self._context.copy().run(super()._fatal_error, exc, message)
