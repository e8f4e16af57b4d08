"""TCP and Unix stream transports: ``_native.StreamCore`` does the reads, writes and buffering,
and its methods are bound straight onto the transport (``transport.write`` *is* the native
method); this class adds asyncio's cold paths with the semantics of asyncio's selector socket
transport: construction, close and abort, error reporting, the flow-control calls into the
protocol, extra info, BufferedProtocol reads, sendfile support. It is an ``asyncio.Transport``
(through ``_FlowControlMixin``, as asyncio's sendfile fallback requires)."""

from __future__ import annotations

import contextvars
import socket
import sys
import warnings
import weakref
from asyncio import constants, futures, transports, trsock
from asyncio.log import logger
from collections.abc import Iterator
from typing import Any, Optional

from monitored_ioloop import _native

__all__ = ["SocketTransport", "TransportMap"]


_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)
#: Reads one readiness event may do for a BufferedProtocol (libuv's figure).
_READS_PER_EVENT = 32


def _core_attribute(name: str) -> Any:
    """A transport attribute kept in the native core (the flags its hot paths read)."""

    def get(self: SocketTransport) -> Any:
        return getattr(self._core, name)

    def set(self: SocketTransport, value: Any) -> None:
        setattr(self._core, name, value)

    return property(get, set)


class _TransportSocket(trsock.TransportSocket):
    """asyncio's socket view, with a repr that names family and type (``AF_UNIX``, as uvloop's;
    asyncio's shows their numbers since enums format as ints, 3.11+)."""

    def __repr__(self) -> str:
        text = super().__repr__()
        family, kind = self.family, self.type
        return text.replace(
            f"family={family!s}, type={kind!s},",
            f"family={getattr(family, 'name', family)}, type={getattr(kind, 'name', kind)},",
            1,
        )


class TransportMap(weakref.WeakValueDictionary[int, Any]):
    """The loop's ``_transports`` (descriptor -> transport, which asyncio consults before
    letting ``add_reader`` or a ``sock_*`` call touch a descriptor).

    asyncio holds transports weakly. A native stream transport is held strongly instead, until
    its connection is lost (it removes itself) or the loop closes: a weak reference would cost
    every idle connection 88 bytes. Other transports are held weakly, as in asyncio."""

    def __init__(self) -> None:
        super().__init__()
        self._native: dict[int, SocketTransport] = {}

    def __setitem__(self, fd: int, transport: Any) -> None:
        if isinstance(transport, SocketTransport):
            super().pop(fd, None)
            self._native[fd] = transport
        else:
            self._native.pop(fd, None)
            super().__setitem__(fd, transport)

    def __getitem__(self, fd: int) -> Any:
        native = self._native.get(fd)
        return native if native is not None else super().__getitem__(fd)

    def get(self, fd: int, default: Any = None) -> Any:
        native = self._native.get(fd)
        return native if native is not None else super().get(fd, default)

    def __delitem__(self, fd: int) -> None:
        if self._native.pop(fd, None) is None:
            super().__delitem__(fd)

    def __contains__(self, fd: object) -> bool:
        return fd in self._native or super().__contains__(fd)

    def __iter__(self) -> Iterator[int]:
        yield from list(self._native)
        yield from super().__iter__()

    def __len__(self) -> int:
        return len(self._native) + super().__len__()

    def pop(self, fd: int, *default: Any) -> Any:
        if fd in self._native:
            return self._native.pop(fd)
        return super().pop(fd, *default)

    def clear(self) -> None:
        self._native.clear()
        super().clear()

    def discard_native(self, fd: int, transport: SocketTransport) -> None:
        """Forgets ``transport`` (at the end of its connection) if it is still the one
        registered for ``fd``."""
        if self._native.get(fd) is transport:
            del self._native[fd]


#: Extra info computed on demand from the socket.
_LAZY_EXTRA = frozenset(("socket", "sockname", "peername"))


class SocketTransport(transports._FlowControlMixin):
    """A stream socket transport whose hot paths are native."""

    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    _start_tls_compatible = True

    # No instance dict (as uvloop's transports): an idle connection is as small as it can be.
    # asyncio's bases keep `_extra` and `_loop` in their slots; `_extra` stays None until extra
    # info is first asked for, `_peername` is the address accept() returned.
    __slots__ = ("_context", "_core", "write", "_sock", "_server", "_peername", "__weakref__")

    _protocol = _core_attribute("_protocol")
    _protocol_connected = _core_attribute("_protocol_connected")
    _closing = _core_attribute("_closing")
    _eof = _core_attribute("_eof")
    _conn_lost = _core_attribute("_conn_lost")
    _paused = _core_attribute("_paused")
    _protocol_paused = _core_attribute("_protocol_paused")
    _high_water = _core_attribute("_high_water")
    _low_water = _core_attribute("_low_water")
    _empty_waiter = _core_attribute("_empty_waiter")

    @property
    def _protocol_type(self) -> Any:
        return self._core._protocol_type

    def __init__(
        self,
        loop: Any,
        sock: socket.socket,
        protocol: Any,
        waiter: Optional[Any] = None,
        extra: Optional[dict[str, Any]] = None,
        server: Optional[Any] = None,
        peername: Any = None,
    ) -> None:
        # As uvloop: the protocol's callbacks all run in a copy of the context current when
        # the connection was made (create_connection's caller; for a server, the context of
        # create_server, copied per connection).
        self._context: contextvars.Context = contextvars.copy_context()
        core = _native.StreamCore(loop, sock, self, self._context)
        self._core = core
        # The hot method is the core's own, bound on the instance: no Python frame between the
        # protocol and the socket. The others delegate (a bound method per connection each
        # would cost an idle connection more memory than they save time).
        self.write = core.write  # type: ignore[method-assign]
        super().__init__(None, loop)
        # "socket", "sockname" and "peername" are made when first asked for (or when the
        # connection ends, so they stay readable after it): an idle connection does not hold
        # a dict, two address tuples and a socket view it may never show.
        self._extra: Optional[dict[str, Any]] = dict(extra) if extra else None
        self._peername = peername
        self._loop: Any = loop
        self._sock: Optional[socket.socket] = sock
        self._server = server
        if server is not None:
            if sys.version_info >= (3, 13):
                server._attach(self)
            else:
                server._attach()
        if sock.family in _TCP_FAMILIES and sock.proto in (0, socket.IPPROTO_TCP):
            # asyncio only does this for sockets created with proto=IPPROTO_TCP; proto 0 is TCP
            # too for a stream socket, and uvloop sets it for every TCP socket.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.set_protocol(protocol)
        # Registered last: the loop holds it (see TransportMap) once nothing above can fail.
        loop._transports[self._sock_fd] = self
        loop.call_soon(protocol.connection_made, self, context=self._context)
        loop.call_soon(self._start_reading, context=self._context)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._sock is not None:
            info.append("read=" + ("polling" if self.is_reading() else "idle"))
            info.append(f"write=<{'polling' if self.get_write_buffer_size() else 'idle'}, "
                        f"bufsize={self.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    @property
    def _sock_fd(self) -> int:
        return self._core._sock_fd

    def __del__(self, _warn: Any = warnings.warn) -> None:
        # getattr: __init__ may have failed before setting it.
        sock = getattr(self, "_sock", None)
        if sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = self._extra
        if extra is None or name not in extra:
            if name not in _LAZY_EXTRA:
                return default if extra is None else extra.get(name, default)
            extra = self._fill_extra(name)
        return extra.get(name, default)

    def _fill_extra(self, *names: str) -> dict[str, Any]:
        """The extra info, with ``names`` (default: all of socket, sockname and peername)
        read from the socket while it is open, as asyncio records them when it makes the
        transport."""
        extra = self._extra
        if extra is None:
            extra = self._extra = {}
        sock = self._sock
        if sock is None:
            return extra
        for name in names or _LAZY_EXTRA:
            if name in extra:
                continue
            if name == "socket":
                extra[name] = _TransportSocket(sock)
            elif name == "peername" and self._peername is not None:
                extra[name] = self._peername
            else:
                try:
                    extra[name] = sock.getsockname() if name == "sockname" else sock.getpeername()
                except OSError:
                    extra[name] = None
        return extra

    def _start_reading(self) -> None:
        self._core._start_reading()

    def get_write_buffer_size(self) -> int:
        return self._core.get_write_buffer_size()

    def is_reading(self) -> bool:
        return self._core.is_reading()

    def pause_reading(self) -> None:
        self._core.pause_reading()

    def resume_reading(self) -> None:
        self._core.resume_reading()

    def get_protocol(self) -> Any:
        return self._core.get_protocol()

    def set_protocol(self, protocol: Any) -> None:
        self._core.set_protocol(protocol)

    def _read_ready(self) -> None:
        self._core._read_ready()

    def _write_ready(self) -> None:
        self._core._write_ready()

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop._remove_reader(self._sock_fd)
        if not self.get_write_buffer_size():
            self._conn_lost += 1
            self._loop._remove_writer(self._sock_fd)
            self._loop.call_soon(self._call_connection_lost, None, context=self._context)

    def abort(self) -> None:
        self._force_close(None)

    def is_closing(self) -> bool:
        return bool(self._core.is_closing())

    def _clear_buffer(self) -> None:
        self._core._clear_buffer()

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {"message": message, "exception": exc, "transport": self,
                 "protocol": self._protocol}
            )
        self._force_close(exc)

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._conn_lost:
            return
        if self.get_write_buffer_size():
            self._clear_buffer()
            self._loop._remove_writer(self._sock_fd)
        if not self._closing:
            self._closing = True
            self._loop._remove_reader(self._sock_fd)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc, context=self._context)

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            waiter = self._empty_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("Connection is closed by peer"))
            if self._sock is not None:
                # The addresses stay readable after the connection.
                extra = self._fill_extra()
                # The loop and the core forget the descriptor first: its number is free for
                # reuse after.
                transports = self._loop._transports
                if isinstance(transports, TransportMap):
                    transports.discard_native(self._sock_fd, self)
                self._core._detach()
                self._sock.close()
                self._sock = None
                # As uvloop: a closed transport has no socket to show (asyncio would hand out
                # the closed one).
                extra["socket"] = None
            self._protocol = None
            self._loop = None
            server = self._server
            if server is not None:
                if sys.version_info >= (3, 13):
                    server._detach(self)
                else:
                    server._detach()
                self._server = None

    # -- reading ------------------------------------------------------------------------------

    def _read_ready__get_buffer(self) -> None:
        # As libuv (so uvloop) reads a stream: on until the socket has nothing more, at most
        # _READS_PER_EVENT times, so a peer that sent its last bytes and hung up is read to
        # the end, EOF included, in one event.
        for _ in range(_READS_PER_EVENT):
            if self._conn_lost or self._closing or self._paused:
                return
            if not self._read_once_into_buffer():
                return

    def _read_once_into_buffer(self) -> bool:
        """One read into the protocol's buffer; False when there is nothing more to read now."""
        try:
            buf = self._protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # As uvloop: the protocol hears of it as one RuntimeError, the cause chained.
            error = RuntimeError("unhandled error (or an empty buffer) in get_buffer()")
            error.__cause__ = exc
            self._fatal_error(error, "Fatal error: protocol.get_buffer() call failed.")
            return False
        assert self._sock is not None
        try:
            nbytes = self._sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return False
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return False
        if not nbytes:
            self._read_ready__on_eof()
            return False
        try:
            self._protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
            return False
        return True

    def _read_ready__on_eof(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            # The other side is done sending; stop watching a descriptor that stays readable.
            self._loop._remove_reader(self._sock_fd)
        else:
            self.close()

    # -- writing ------------------------------------------------------------------------------

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self.get_write_buffer_size() and self._sock is not None:
            self._sock.shutdown(socket.SHUT_WR)

    def can_write_eof(self) -> bool:
        return True

    def _on_write_drained(self) -> None:
        waiter = self._empty_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._closing:
            # Unless close() already scheduled it: the protocol may have closed the transport
            # from resume_writing(), called just before with the buffer already empty.
            if not self._conn_lost:
                self._conn_lost += 1
                self._call_connection_lost(None)
        elif self._eof and self._sock is not None:
            self._sock.shutdown(socket.SHUT_WR)

    def _maybe_pause_protocol(self) -> None:
        if self.get_write_buffer_size() <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            # A copy: this runs inside the caller's write(), maybe in the context itself.
            self._context.copy().run(self._protocol.pause_writing)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {"message": "protocol.pause_writing() failed", "exception": exc,
                 "transport": self, "protocol": self._protocol}
            )

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self.get_write_buffer_size() <= self._low_water:
            self._protocol_paused = False
            try:
                self._context.copy().run(self._protocol.resume_writing)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler(
                    {"message": "protocol.resume_writing() failed", "exception": exc,
                     "transport": self, "protocol": self._protocol}
                )

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(
        self, high: Optional[int] = None, low: Optional[int] = None
    ) -> None:
        self._set_write_buffer_limits(high, low)
        self._maybe_pause_protocol()

    def _set_write_buffer_limits(
        self, high: Optional[int] = None, low: Optional[int] = None
    ) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low

    # -- sendfile (asyncio's selector loop drives it through these) ---------------------------

    def _make_empty_waiter(self) -> Any:
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        waiter = self._loop.create_future()
        self._empty_waiter = waiter
        if not self.get_write_buffer_size():
            waiter.set_result(None)
        return waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None
