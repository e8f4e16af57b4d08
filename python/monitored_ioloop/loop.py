"""The native loop as asyncio sees it: ``_native.Loop`` (ready queue, timers, fd watchers, the
run cycle and monitoring, in Rust) joined with asyncio's selector loop for the paths it already
gets right in Python (tasks, futures, executors, exception handling, async generators, sockets,
transports, servers, pipes, subprocesses), plus signals. TLS is our own (``_sslproto``:
uvloop's semantics on every Python), over the native stream transports.

asyncio's selector loop code only reaches the OS through ``_add_reader``/``_add_writer`` and
their removals, which the native core implements on libuv; the selector it keeps is a read-only
view of the native watchers (its transports' reprs read it)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import selectors
import signal
import socket
import ssl
import sys
import threading
import warnings
import weakref
from asyncio import base_events, constants, coroutines, events, trsock
from asyncio.log import logger
from collections.abc import Iterator, Mapping
from contextvars import Context, copy_context
from typing import Any, Callable, Optional

from monitored_ioloop import _native
from monitored_ioloop._sslproto import SSLProtocol
from monitored_ioloop.datagram import DatagramTransport
from monitored_ioloop.monitoring import LoopSnapshot, MonitorCallback, WatchdogReport
from monitored_ioloop.transports import SocketTransport, TransportMap

__all__ = ["DEFAULT_SLOW_CALLBACK_CAPACITY", "DEFAULT_SLOW_CALLBACK_THRESHOLD", "Loop"]

#: Seconds at or over which a dispatch is recorded as a slow callback, unless told otherwise.
DEFAULT_SLOW_CALLBACK_THRESHOLD = 0.1
#: Slow callbacks kept (the oldest are dropped first).
DEFAULT_SLOW_CALLBACK_CAPACITY = 256


#: accept() errors that mean "out of descriptors or memory": retried after a delay.
_ACCEPT_RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

_STREAM_FAMILIES = tuple(
    getattr(socket, name) for name in ("AF_INET", "AF_INET6", "AF_UNIX") if hasattr(socket, name)
)

_SignalEntry = tuple[Callable[..., object], tuple[Any, ...], Context]

#: create_datagram_endpoint's reuse_address when not given (asyncio 3.11+ dropped the name).
_UNSET: Any = object()


def _wake_waiter(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _noop_signal_handler(signum: int, frame: Any) -> None:
    """Installed for signals that have a loop handler: the loop reads them from its wake-up fd."""


class _WatcherMap(Mapping[Any, selectors.SelectorKey]):
    def __init__(self, selector: _NativeSelector) -> None:
        self._selector = selector

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        return self._selector.get_key(fileobj)

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _NativeSelector(selectors.BaseSelector):
    """What asyncio's selector loop code sees of the native fd watchers: keys to read, nothing
    to register (the native ``_add_reader``/``_add_writer`` do that) and nothing to select."""

    def __init__(self) -> None:
        self._loop: Optional[weakref.ReferenceType[Loop]] = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        raise NotImplementedError("the native loop watches descriptors itself")

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        raise NotImplementedError("the native loop watches descriptors itself")

    def select(self, timeout: Optional[float] = None) -> list[tuple[selectors.SelectorKey, int]]:
        raise NotImplementedError("the native loop waits for events itself")

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        loop = self._loop() if self._loop is not None else None
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        state = loop._io_watch_state(fd) if loop is not None else None
        if state is None:
            raise KeyError(f"{fileobj!r} is not registered")
        events_mask, reader, writer = state
        return selectors.SelectorKey(fileobj, fd, events_mask, (reader, writer))

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return _WatcherMap(self)


class _SignalWakeup:
    """The loop's signal wake-up fd, in one attribute: a loop instance keeps few enough
    attributes (CPython shares the keys of up to 30) for `loop.call_soon` to be looked up
    without a dict probe."""

    __slots__ = ("socks", "saved_fd", "installed", "running_on_main")

    def __init__(self) -> None:
        self.socks: Optional[tuple[socket.socket, socket.socket]] = None
        self.saved_fd: Optional[int] = None
        self.installed = False
        self.running_on_main = False


class _Holding:
    """Holds a socket while an operation waits on it (see ``Loop._holding``): socket.socket's
    io-reference count, the one ``makefile()`` uses, so that ``sock.close()`` meanwhile only
    marks it closed. A class rather than a generator: entered on every ``sock_*`` call."""

    __slots__ = ("_loop", "_sock", "_held")

    def __init__(self, loop: Loop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        # socket.socket keeps the count in _io_refs (a stand-in object may have none).
        self._held = type(getattr(sock, "_io_refs", None)) is int

    def __enter__(self) -> None:
        if self._held:
            sock, held = self._sock, self._loop._held_sockets
            sock._io_refs += 1  # type: ignore[attr-defined]
            held[sock] = held.get(sock, 0) + 1

    def __exit__(self, *exc_info: object) -> None:
        if self._held:
            self._loop._release_socket(self._sock)


class Loop(_native.Loop, asyncio.SelectorEventLoop):  # type: ignore[misc]
    """An asyncio event loop on libuv, with every callback timed natively.

    Every dispatch feeds the native aggregates (``monitor_snapshot()``); the options say what
    else happens:

    - ``monitor_callback``: called with an :class:`~monitored_ioloop.monitoring.IoLoopMonitorState`
      after each dispatch that took at least ``monitor_min_wall_time`` seconds (default: all).
    - ``slow_callback_threshold``: dispatches at least this long (seconds; None: off) are kept
      in a ring of ``slow_callback_capacity`` records and logged on
      ``monitored_ioloop.slow_callbacks``.
    - ``watchdog_threshold``: a native thread reports, with the loop thread's stack, any
      dispatch still running after this many seconds (logged on ``monitored_ioloop.watchdog``
      and passed to ``watchdog_callback``).
    """

    # Every attribute asyncio's loop classes (3.9-3.13) and this class set lives in a slot, so
    # the instance dict is never created and `loop.call_soon` is looked up by type alone
    # (CPython's specialised method load; a dict, even a small one, costs a probe per call).
    # An attribute set from outside (a test's mock) still goes to a dict, as before.
    __slots__ = (
        "_asyncgens", "_asyncgens_shutdown_called", "_clock_resolution", "_closed",
        "_coroutine_origin_tracking_enabled", "_coroutine_origin_tracking_saved_depth",
        "_csock", "_current_handle", "_debug", "_default_executor", "_exception_handler",
        "_executor_shutdown_called", "_held_sockets", "_internal_fds", "_old_agen_hooks",
        "_ready", "_scheduled", "_selector", "_signal_handlers", "_ssock", "_stopping",
        "_subprocess_contexts", "_task_factory_value", "_thread_id", "_timer_cancelled_count",
        "_transports", "_unix_server_sockets", "_unix_socket_files", "_wakeup", "_watchdog",
        "slow_callback_duration",
    )

    # mypy reads BaseEventLoop's private helpers from typeshed, which leaves them out.
    _set_coroutine_origin_tracking: Callable[[bool], None]
    _asyncgen_firstiter_hook: Callable[[Any], None]
    _asyncgen_finalizer_hook: Callable[[Any], None]
    _thread_id: Optional[int]
    _default_executor: Any
    _executor_shutdown_called: bool
    _closed: bool
    _debug: bool

    def __init__(
        self,
        monitor_callback: Optional[MonitorCallback] = None,
        *,
        monitor_min_wall_time: Optional[float] = None,
        slow_callback_threshold: Optional[float] = DEFAULT_SLOW_CALLBACK_THRESHOLD,
        slow_callback_capacity: int = DEFAULT_SLOW_CALLBACK_CAPACITY,
        watchdog_threshold: Optional[float] = None,
        watchdog_callback: Optional[Callable[[WatchdogReport], object]] = None,
    ) -> None:
        # Options first: a bad value raises before anything is set up (and `__del__` then
        # only releases the native core).
        self.monitor_min_wall_time = monitor_min_wall_time
        self.slow_callback_threshold = slow_callback_threshold
        self.slow_callback_capacity = slow_callback_capacity
        if watchdog_threshold is not None or watchdog_callback is not None:
            from monitored_ioloop import _watchdog

            _watchdog.check_options(watchdog_threshold, watchdog_callback)
        selector = _NativeSelector()
        asyncio.SelectorEventLoop.__init__(self, selector)
        self._transports = TransportMap()
        selector._loop = weakref.ref(self)
        self._signal_handlers: dict[int, _SignalEntry] = {}
        self._wakeup = _SignalWakeup()
        # Sockets a pending sock_* operation holds (see _holding), with how many times.
        self._held_sockets: dict[socket.socket, int] = {}
        # Listening unix sockets to remove on close (cleanup_socket=, before 3.13): inode.
        self._unix_socket_files: dict[socket.socket, int] = {}
        # Subprocesses being created: id(protocol) -> (protocol, the creator's context).
        self._subprocess_contexts: dict[int, tuple[Any, Context]] = {}
        if monitor_callback is not None:
            self.set_monitor_callback(monitor_callback)
        self._watchdog: Optional[Any] = None
        if watchdog_threshold is not None or watchdog_callback is not None:
            self.set_watchdog(watchdog_threshold, watchdog_callback)

    # -- monitoring -----------------------------------------------------------------------------

    def monitor_snapshot(self) -> LoopSnapshot:
        """The loop's figures now (see :class:`~monitored_ioloop.monitoring.LoopSnapshot`):
        consistent (taken between two dispatches), safe from any thread, and on a closed loop
        the final figures."""
        raw = self._monitor_raw()
        watchdog = self._watchdog
        if watchdog is None:
            return LoopSnapshot._from_raw(raw)
        reports, total = watchdog.reports()
        return LoopSnapshot._from_raw(raw, reports, total)

    def set_watchdog(
        self,
        threshold: Optional[float],
        callback: Optional[Callable[[WatchdogReport], object]] = None,
    ) -> None:
        """Watches for dispatches running longer than ``threshold`` seconds (None: stop)."""
        from monitored_ioloop import _watchdog

        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if threshold is not None:
            self._watchdog = _watchdog.LoopWatch.start(self, threshold, callback)
        elif callback is not None:
            raise ValueError("watchdog_callback needs a watchdog_threshold")

    # -- asyncio's self-pipe: the native loop has its own wake-up --------------------------------

    def _make_self_pipe(self) -> None:
        self._ssock = self._csock = None

    def _close_self_pipe(self) -> None:
        pass

    # -- accepting: a plain connection is set up at once ---------------------------------------

    def _accept_connection(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        sock: socket.socket,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        *ssl_timeouts: Any,
    ) -> None:
        """Accepts what is waiting on a listening socket (at most ``backlog`` connections).

        asyncio sets each connection up in a task of its own; a plain one needs nothing to
        wait for, so here (as in uvloop) its protocol and transport are made at once: no task
        and no waiter future per connection, which keeps a burst of connections from growing
        the heap. A TLS connection waits for its handshake, in asyncio's task."""
        if sslcontext:
            super()._accept_connection(  # type: ignore[misc]
                protocol_factory, sock, sslcontext, server, backlog, *ssl_timeouts
            )
            return
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRNOS:
                    raise  # to the exception handler, as asyncio
                # Linux keeps reporting the socket readable: stop watching it for a while.
                self.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": exc,
                    "socket": trsock.TransportSocket(sock),
                })
                self._remove_reader(sock.fileno())
                self.call_later(
                    constants.ACCEPT_RETRY_DELAY, self._start_serving,  # type: ignore[attr-defined]
                    protocol_factory, sock, sslcontext, server, backlog, *ssl_timeouts,
                )
                return
            if self._debug:
                logger.debug("%r got a new connection from %r: %r", server, addr, conn)
            self._set_up_accepted(protocol_factory, conn, addr, server)

    def _set_up_accepted(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        conn: socket.socket,
        addr: Any,
        server: Any,
    ) -> None:
        protocol = transport = None
        try:
            protocol = protocol_factory()
            transport = self._make_socket_transport(
                conn, protocol, extra={"peername": addr}, server=server
            )
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            # As asyncio: reported in debug mode only.
            if self._debug:
                context: dict[str, Any] = {
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                }
                if protocol is not None:
                    context["protocol"] = protocol
                self.call_exception_handler(context)

    # -- transports: stream sockets get the native transport ---------------------------------

    def _make_socket_transport(
        self,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        waiter: Optional[asyncio.Future[Any]] = None,
        *,
        extra: Optional[dict[str, Any]] = None,
        server: Optional[Any] = None,
    ) -> asyncio.Transport:
        if sock.type == socket.SOCK_STREAM and sock.family in _STREAM_FAMILIES:
            # The accepted peer's address is kept on its own (no dict per idle connection).
            peername = None
            if extra and "peername" in extra:
                extra = dict(extra)
                peername = extra.pop("peername")
            return SocketTransport(self, sock, protocol, waiter, extra, server, peername)
        return super()._make_socket_transport(  # type: ignore[misc,no-any-return]
            sock, protocol, waiter, extra=extra, server=server
        )

    def _make_datagram_transport(
        self,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        address: Any = None,
        waiter: Optional[asyncio.Future[Any]] = None,
        extra: Optional[dict[str, Any]] = None,
    ) -> asyncio.DatagramTransport:
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    # -- TLS: our own SSL protocol (uvloop's semantics), on every Python --------------------

    def _make_ssl_transport(
        self,
        rawsock: socket.socket,
        protocol: asyncio.BaseProtocol,
        sslcontext: Optional[ssl.SSLContext],
        waiter: Optional[asyncio.Future[Any]] = None,
        *,
        server_side: bool = False,
        server_hostname: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        server: Optional[Any] = None,
        ssl_handshake_timeout: Optional[float] = None,
        ssl_shutdown_timeout: Optional[float] = None,
        call_connection_made: bool = True,
    ) -> asyncio.Transport:
        ssl_protocol = SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            call_connection_made=call_connection_made,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        transport = self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        # The application's callbacks run where the plain transport runs its protocol's.
        return ssl_protocol._get_app_transport(getattr(transport, "_context", None))

    async def start_tls(
        self,
        transport: asyncio.BaseTransport,
        protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: Optional[str] = None,
        ssl_handshake_timeout: Optional[float] = None,
        ssl_shutdown_timeout: Optional[float] = None,
    ) -> asyncio.Transport:
        """Upgrades ``transport`` to TLS; returns the new transport ``protocol`` then uses
        (its ``connection_made`` is not called again). The protocol's callbacks keep running
        in the context of the connection (as uvloop)."""
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, "
                f"got {sslcontext!r}"
            )
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        context: Optional[Context] = getattr(transport, "_context", None)
        if context is None:
            context = copy_context()
        waiter = self.create_future()
        ssl_protocol = SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            call_connection_made=False,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        # Not reading until the SSL protocol is in place: nothing reaches it before its
        # connection_made().
        transport.pause_reading()  # type: ignore[attr-defined]
        transport.set_protocol(ssl_protocol)
        made = self.call_soon(ssl_protocol.connection_made, transport, context=context)
        resumed = self.call_soon(transport.resume_reading, context=context)  # type: ignore[attr-defined]
        app_transport = ssl_protocol._get_app_transport(context)
        try:
            await waiter
        except BaseException:
            made.cancel()
            resumed.cancel()
            app_transport.close()
            # Also when the handshake never started (cancelled at once).
            transport.close()
            raise
        return app_transport

    if sys.version_info >= (3, 11):

        async def create_datagram_endpoint(  # type: ignore[override]
            self,
            protocol_factory: Callable[[], asyncio.BaseProtocol],
            local_addr: Any = None,
            remote_addr: Any = None,
            *,
            reuse_address: Any = _UNSET,
            **kwargs: Any,
        ) -> tuple[asyncio.DatagramTransport, asyncio.BaseProtocol]:
            # As asyncio 3.8-3.10 and uvloop: the parameter is still accepted, True refused
            # (SO_REUSEADDR on UDP lets another process steal the port's datagrams).
            if reuse_address is not _UNSET:
                if reuse_address:
                    raise ValueError(
                        "Passing `reuse_address=True` is no longer supported, as the usage "
                        "of SO_REUSEPORT in UDP poses a significant security concern."
                    )
                warnings.warn(
                    "The *reuse_address* parameter has been deprecated as of 3.8 and "
                    "is ignored.",
                    DeprecationWarning,
                    stacklevel=2,
                )
            return await super().create_datagram_endpoint(
                protocol_factory, local_addr, remote_addr, **kwargs
            )

    # -- unix servers: cleanup_socket= (asyncio 3.13) on every version ------------------------

    if sys.version_info < (3, 13):

        async def create_unix_server(  # type: ignore[override]
            self,
            protocol_factory: Callable[[], asyncio.BaseProtocol],
            path: Any = None,
            *,
            cleanup_socket: bool = False,
            **kwargs: Any,
        ) -> asyncio.AbstractServer:
            """asyncio's, plus 3.13's ``cleanup_socket``: when true, closing the server removes
            its socket file (if it is still the one the server bound). Off by default here,
            as this Python's asyncio never removes it."""
            server = await super().create_unix_server(protocol_factory, path, **kwargs)
            if cleanup_socket:
                for sock in server._sockets:  # type: ignore[attr-defined]
                    name = sock.getsockname()
                    if name and name[0] not in (0, "\x00"):  # not an abstract name
                        with contextlib.suppress(FileNotFoundError):
                            self._unix_socket_files[sock] = os.stat(name).st_ino
            return server

        def _stop_serving(self, sock: socket.socket) -> None:
            inode = self._unix_socket_files.pop(sock, None)
            path = sock.getsockname() if inode is not None else None
            super()._stop_serving(sock)  # type: ignore[misc]
            if path is not None:
                try:
                    if os.stat(path).st_ino == inode:
                        os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    # -- subprocesses: the exit is reported in the creator's context (as uvloop) --------------

    async def _make_subprocess_transport(
        self, protocol: asyncio.BaseProtocol, *args: Any, **kwargs: Any
    ) -> Any:
        self._subprocess_contexts[id(protocol)] = (protocol, copy_context())
        try:
            return await super()._make_subprocess_transport(  # type: ignore[misc]
                protocol, *args, **kwargs
            )
        except BaseException:
            self._subprocess_contexts.pop(id(protocol), None)
            raise

    def _child_watcher_callback(self, pid: int, returncode: int, transp: Any) -> None:
        # Called from the child watcher's thread (or the pidfd reader): asyncio would run
        # process_exited, and connection_lost after it, in that thread's context.
        entry = self._subprocess_contexts.pop(id(transp._protocol), None)
        context = entry[1] if entry is not None and entry[0] is transp._protocol else None
        self.call_soon_threadsafe(transp._process_exited, returncode, context=context)

    # -- sockets: asyncio's implementations, with blocking sockets always refused (as uvloop) ---
    # While an operation waits on a socket the loop holds it, as uvloop does: ``sock.close()``
    # from the user then only marks it closed (socket.socket's own io-reference count, the one
    # ``makefile()`` uses), and the descriptor is really closed when the operation ends, or
    # when the loop is closed. So a close never pulls a descriptor out from under a watcher
    # (which would report EBADF later, or watch a recycled number).

    @staticmethod
    def _check_nonblocking(sock: socket.socket) -> None:
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _holding(self, sock: socket.socket) -> _Holding:
        """``with self._holding(sock):`` around an operation that may wait on ``sock``."""
        self._check_nonblocking(sock)
        return _Holding(self, sock)

    def _release_socket(self, sock: socket.socket, times: int = 1) -> None:
        count = self._held_sockets.get(sock, 0)
        times = min(times, count)  # the loop's close may have released it already
        if count - times:
            self._held_sockets[sock] = count - times
        else:
            self._held_sockets.pop(sock, None)
        for _ in range(times):
            sock._decref_socketios()  # type: ignore[attr-defined]

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        if sock.__class__ is socket.socket:
            # Native: the read now, or a future the socket's reader completes (None: asyncio's
            # path decides, with its checks and errors).
            got = self._sock_recv_native(sock, n)
            if got.__class__ is bytes:
                return got
            if got is not None:
                try:
                    return await got  # type: ignore[no-any-return]
                except BaseException:
                    self._sock_recv_abandoned(sock, got)
                    raise
        with self._holding(sock):
            return await super().sock_recv(sock, n)

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        with self._holding(sock):
            return await super().sock_recv_into(sock, buf)

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        # What the socket takes at once needs no hold and no waiting coroutine (asyncio's first
        # step, done here, natively for bytes on a plain socket; the rest is asyncio's).
        if sock.__class__ is socket.socket:
            sent = self._sock_send_native(sock, data)
            if sent is None:
                return
        else:
            sent = -1
        if sent < 0:
            base_events._check_ssl_socket(sock)  # type: ignore[attr-defined]
            self._check_nonblocking(sock)
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent == len(data):
                return
        with _Holding(self, sock):  # checked above
            return await super().sock_sendall(sock, memoryview(data)[sent:] if sent else data)

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        with self._holding(sock):
            return await super().sock_connect(sock, address)

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        with self._holding(sock):
            return await super().sock_accept(sock)

    if sys.version_info >= (3, 11):

        async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
            with self._holding(sock):
                return await super().sock_recvfrom(sock, bufsize)

        async def sock_recvfrom_into(
            self, sock: socket.socket, buf: Any, nbytes: int = 0
        ) -> tuple[int, Any]:
            with self._holding(sock):
                return await super().sock_recvfrom_into(sock, buf, nbytes)

        async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
            with self._holding(sock):
                return await super().sock_sendto(sock, data, address)

    else:  # asyncio gained these in 3.11

        async def _sock_io(self, sock: socket.socket, write: bool, op: Callable[[], Any]) -> Any:
            while True:
                try:
                    return op()
                except (BlockingIOError, InterruptedError):
                    pass
                waiter = self.create_future()
                fd = sock.fileno()
                add = self._add_writer if write else self._add_reader
                remove = self._remove_writer if write else self._remove_reader
                add(fd, _wake_waiter, waiter)
                try:
                    await waiter
                finally:
                    remove(fd)

        async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
            with self._holding(sock):
                return await self._sock_io(sock, False, lambda: sock.recvfrom(bufsize))  # type: ignore[no-any-return]

        async def sock_recvfrom_into(
            self, sock: socket.socket, buf: Any, nbytes: int = 0
        ) -> tuple[int, Any]:
            with self._holding(sock):
                return await self._sock_io(  # type: ignore[no-any-return]
                    sock, False, lambda: sock.recvfrom_into(buf, nbytes)
                )

        async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
            with self._holding(sock):
                return await self._sock_io(sock, True, lambda: sock.sendto(data, address))  # type: ignore[no-any-return]

    # -- tasks --------------------------------------------------------------------------------

    # asyncio's set_task_factory and __init__ assign `_task_factory`; the native create_task
    # reads a flag kept with it instead of looking the attribute up on every task.
    @property
    def _task_factory(self) -> Any:
        return self._task_factory_value

    @_task_factory.setter
    def _task_factory(self, factory: Any) -> None:
        self._task_factory_value = factory
        self._set_task_factory_native(factory is not None)

    # -- debug --------------------------------------------------------------------------------

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled
        self._set_debug_native(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    # -- running ------------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def run_forever(self) -> None:
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook
        )
        watching_signals = False
        try:
            watching_signals = self._watch_signals(True)
            events._set_running_loop(self)
            self._run_native()
        finally:
            self._thread_id = None
            events._set_running_loop(None)
            if watching_signals:
                self._watch_signals(False)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._watchdog is not None:
            self._watchdog.stop()
        self._close_native()
        self._closed = True
        # Transports left open are the user's to close; the loop lets go of them (an
        # unreferenced one is collected and warns, as asyncio's).
        self._transports.clear()
        # Operations still pending let go of their sockets (a socket the user closed meanwhile
        # is really closed now).
        for sock, count in list(self._held_sockets.items()):
            self._release_socket(sock, count)
        # As asyncio's selector loop: transports' reprs then say "open" rather than ask.
        self._selector = None
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        self._update_wakeup_fd()
        if self._wakeup.socks is not None:
            for sock in self._wakeup.socks:
                sock.close()
            self._wakeup.socks = None
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    # -- signals ------------------------------------------------------------------------------
    # Python's C-level handler writes each signal number to the wake-up fd; the loop watches the
    # other end while it waits, so a signal ends the wait at once (Ctrl-C on an idle loop), and
    # runs the Python-level handlers (KeyboardInterrupt) and the loop's own handlers.

    def _watch_signals(self, running: bool) -> bool:
        """Watches the wake-up fd while running on the main thread; True if it did."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._wakeup.running_on_main = running
        self._update_wakeup_fd()
        return True

    def _update_wakeup_fd(self) -> None:
        """Installs our wake-up fd while it is wanted; uninstalls it, restoring what was there
        before, only if it is still ours (another loop may have installed its own since)."""
        want = not self.is_closed() and (
            bool(self._signal_handlers) or self._wakeup.running_on_main
        )
        on_main = threading.current_thread() is threading.main_thread()
        if want:
            if self._wakeup.socks is None:
                rsock, wsock = socket.socketpair()
                rsock.setblocking(False)
                wsock.setblocking(False)
                self._wakeup.socks = (rsock, wsock)
            wfd = self._wakeup.socks[1].fileno()
            previous = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
            if not self._wakeup.installed:
                self._wakeup.saved_fd = previous if previous != wfd else -1
                self._wakeup.installed = True
            self._set_signal_fd(self._wakeup.socks[0].fileno())
        elif self._wakeup.installed:
            self._set_signal_fd(-1)
            self._wakeup.installed = False
            saved, self._wakeup.saved_fd = self._wakeup.saved_fd, None
            if on_main and self._wakeup.socks is not None:
                try:
                    current = signal.set_wakeup_fd(-1)
                    ours = self._wakeup.socks[1].fileno()
                    signal.set_wakeup_fd(
                        (saved if saved is not None else -1) if current == ours else current
                    )
                except (ValueError, OSError):
                    pass

    def _read_signal_fd(self) -> None:
        assert self._wakeup.socks is not None
        while True:
            try:
                data = self._wakeup.socks[0].recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            for signum in data:
                self._handle_signal(signum)

    def _handle_signal(self, signum: int) -> None:
        entry = self._signal_handlers.get(signum)
        if entry is not None:
            callback, args, context = entry
            self._call_signal_handler(callback, *args, context=context)

    def _check_signal(self, sig: int) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(  # type: ignore[override]
        self, sig: int, callback: Callable[..., object], *args: Any
    ) -> None:
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("set_wakeup_fd only works in main thread of the main interpreter")
        self._signal_handlers[sig] = (callback, args, copy_context())
        try:
            self._update_wakeup_fd()
            signal.signal(sig, _noop_signal_handler)
            # Let system calls carry on after the signal, as asyncio does.
            signal.siginterrupt(sig, False)
        except (OSError, ValueError) as exc:
            del self._signal_handlers[sig]
            self._update_wakeup_fd()
            if isinstance(exc, OSError) and exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            if isinstance(exc, ValueError):
                raise RuntimeError(str(exc)) from None
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        self._check_signal(sig)
        if self._signal_handlers.pop(sig, None) is None:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        self._update_wakeup_fd()
        return True

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not hasattr(self, "_watchdog"):
            # __init__ refused its arguments: nothing of asyncio's was set up.
            self._close_native()
            return
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not sys.is_finalizing():
                self.close()

