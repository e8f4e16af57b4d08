"""TLS over the loop's stream transports, with uvloop's semantics, the same on every Python.

``SSLProtocol`` is the protocol of a plain transport (TCP or Unix, or another TLS transport for
TLS over TLS): what the transport reads goes into an ``ssl.SSLObject`` through memory BIOs, what
the SSLObject produces is written to the transport. The application gets an ``SSLTransport``.

Where this follows uvloop rather than asyncio (whose own implementation changed in 3.11):

- The application protocol's callbacks all run in the connection's context: the one the plain
  transport runs its protocol in (a copy of create_connection's or start_tls's caller's, for a
  server a per-connection copy of create_server's), also when a call on the TLS transport
  (``write``, ``close``, ``resume_reading``) is what leads to them.
- ``close()`` first sends what the application wrote, then close_notify, then waits for the
  peer's close_notify for at most ``ssl_shutdown_timeout``; application data that arrives
  meanwhile is dropped (bpo-39951), as is data left unread because reading was paused.
- An EOF of the plain transport without close_notify ends the connection:
  ``connection_lost(None)`` without ``eof_received()``.
- After the handshake the first data is handed over in a later callback, once the waiter's
  callbacks ran (start_tls's caller then has the new transport).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import enum
import ssl
import warnings
from asyncio import constants, transports
from asyncio.log import logger
from typing import Any, Callable, Optional, Union, cast

__all__ = ["SSLProtocol", "SSLTransport"]

#: Most plaintext one ``SSLObject.read`` returns for a data_received protocol.
READ_MAX_SIZE = 256 * 1024
#: Default flow-control limits (uvloop's): the read side pauses the plain transport when this
#: much ciphertext waits undecrypted; the write side pauses the application when this much
#: waits to go out.
READ_HIGH_WATER = 256 * 1024
WRITE_HIGH_WATER = 512 * 1024
#: Seconds, when not given: asyncio's and uvloop's defaults.
HANDSHAKE_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0
#: Writes after the connection was closed are dropped; from this many on they are logged.
LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

#: What a non-blocking SSLObject raises when it needs more input first.
_AGAIN = (ssl.SSLWantReadError, ssl.SSLSyscallError)

_Data = Union[bytes, bytearray, memoryview]


class _State(enum.Enum):
    UNWRAPPED = "UNWRAPPED"  # not started, aborted, or the connection is gone
    DO_HANDSHAKE = "DO_HANDSHAKE"
    WRAPPED = "WRAPPED"  # application data flows both ways
    FLUSHING = "FLUSHING"  # closing: what the application wrote still goes out
    SHUTDOWN = "SHUTDOWN"  # close_notify sent (or being sent), waiting for the peer's


_NEXT_STATES = {
    _State.UNWRAPPED: {_State.DO_HANDSHAKE},
    _State.DO_HANDSHAKE: {_State.WRAPPED},
    _State.WRAPPED: {_State.FLUSHING, _State.SHUTDOWN},
    _State.FLUSHING: {_State.SHUTDOWN},
    _State.SHUTDOWN: set(),
}


class _AppState(enum.Enum):
    """Where the application protocol is: connection_made, then eof_received at most once,
    then connection_lost exactly once (and never connection_lost without connection_made)."""

    INIT = "INIT"
    CONNECTED = "CONNECTED"
    EOF = "EOF"
    LOST = "LOST"


def _checked_timeout(name: str, value: Optional[float], default: float) -> float:
    if value is None:
        return default
    if value <= 0:
        raise ValueError(f"{name} should be a positive number, got {value}")
    return value


def _flow_limits(high: Optional[int], low: Optional[int], default_high: int) -> tuple[int, int]:
    if high is None:
        high = default_high if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


def _nbytes(data: _Data) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


def _default_context(server_side: bool, server_hostname: Optional[str]) -> ssl.SSLContext:
    """``ssl=True``: the stdlib's default client context (hostname checked when one is given)."""
    if server_side:
        raise ValueError("Server side SSL needs a valid SSLContext")
    context = ssl.create_default_context()
    if not server_hostname:
        context.check_hostname = False
    return context


class SSLTransport(transports._FlowControlMixin):
    """The transport a TLS connection's application protocol sees."""

    # TLS over TLS: start_tls() accepts this transport too.
    _start_tls_compatible = True
    # loop.sendfile() writes the file through write() (asyncio's fallback).
    _sendfile_compatible = constants._SendfileMode.FALLBACK

    def __init__(
        self, loop: asyncio.AbstractEventLoop, ssl_protocol: SSLProtocol,
        context: contextvars.Context,
    ) -> None:
        # _FlowControlMixin.__init__ is not called: the limits live in the SSL protocol.
        self._loop = loop
        self._ssl_protocol = ssl_protocol
        #: The connection's context: the application protocol's callbacks run in it.
        self._context = context
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._ssl_protocol._state.value.lower()
        return f"<{type(self).__name__} {state}>"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not self._closed:
            self._closed = True
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._ssl_protocol._get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._ssl_protocol._set_app_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._ssl_protocol._app_protocol  # type: ignore[return-value]

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Sends what was written, then close_notify; connection_lost() follows once the peer
        answered with its own (or ``ssl_shutdown_timeout`` passed). Data received meanwhile is
        dropped."""
        self._closed = True
        self._ssl_protocol._start_shutdown(self._context)

    def abort(self) -> None:
        """Closes at once: what was not sent yet is dropped, no close_notify."""
        self._force_close(None)

    def _force_close(self, exc: Optional[BaseException]) -> None:
        self._closed = True
        self._ssl_protocol._abort(exc)

    # -- reading ----------------------------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._ssl_protocol._app_reading_paused

    def pause_reading(self) -> None:
        self._ssl_protocol._app_reading_paused = True

    def resume_reading(self) -> None:
        self._ssl_protocol._resume_reading()

    def set_read_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        """Limits on ciphertext received but not decrypted yet (while the protocol does not
        read): over ``high`` the plain transport stops reading, under ``low`` it resumes."""
        self._ssl_protocol._set_read_buffer_limits(high, low)
        self._ssl_protocol._control_ssl_reading()

    def get_read_buffer_limits(self) -> tuple[int, int]:
        return (self._ssl_protocol._incoming_low_water, self._ssl_protocol._incoming_high_water)

    def get_read_buffer_size(self) -> int:
        return self._ssl_protocol._incoming.pending

    # -- writing ----------------------------------------------------------------------------

    def write(self, data: _Data) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data: expecting a bytes-like instance, got {type(data).__name__}"
            )
        if data:
            self._ssl_protocol._write_appdata(data, self._context)

    def writelines(self, list_of_data: Any) -> None:
        # Joined first: a wrong item is a TypeError here, not a fatal error of the connection.
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        raise NotImplementedError("TLS transports cannot half-close")

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self._ssl_protocol._get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._ssl_protocol._outgoing_low_water, self._ssl_protocol._outgoing_high_water)

    def set_write_buffer_limits(
        self, high: Optional[int] = None, low: Optional[int] = None
    ) -> None:
        self._ssl_protocol._set_write_buffer_limits(high, low)
        self._ssl_protocol._control_app_writing(self._context)

    @property
    def _protocol_paused(self) -> bool:
        # asyncio's sendfile fallback reads it.
        return self._ssl_protocol._app_writing_paused

    def _test__append_write_backlog(self, data: bytes) -> None:
        """For tests (asyncio's and uvloop's use it): data queued as if the TLS layer could not
        take it yet."""
        self._ssl_protocol._write_backlog.append(data)
        self._ssl_protocol._write_buffer_size += len(data)


class SSLProtocol(asyncio.Protocol):
    """The plain transport's protocol: runs TLS and drives the application protocol."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        sslcontext: Optional[ssl.SSLContext],
        waiter: Optional[asyncio.Future[Any]],
        server_side: bool = False,
        server_hostname: Optional[str] = None,
        *,
        call_connection_made: bool = True,
        ssl_handshake_timeout: Optional[float] = None,
        ssl_shutdown_timeout: Optional[float] = None,
    ) -> None:
        self._handshake_timeout = _checked_timeout(
            "ssl_handshake_timeout", ssl_handshake_timeout, HANDSHAKE_TIMEOUT
        )
        self._shutdown_timeout = _checked_timeout(
            "ssl_shutdown_timeout", ssl_shutdown_timeout, SHUTDOWN_TIMEOUT
        )
        if not sslcontext:
            sslcontext = _default_context(server_side, server_hostname)
        if server_side or not server_hostname:
            server_hostname = None
        self._loop = loop
        self._waiter = waiter
        self._extra: dict[str, Any] = {"sslcontext": sslcontext}
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        # Made here, not at connection_made: a context that refuses the arguments (a hostname
        # check without a hostname) is an error of the call that asked for TLS.
        self._sslobj = sslcontext.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side,
            server_hostname=server_hostname,
        )
        self._state = _State.UNWRAPPED
        self._app_state = _AppState.INIT if call_connection_made else _AppState.CONNECTED
        #: Replaced by the plain transport's context in _get_app_transport().
        self._context = contextvars.copy_context()
        self._transport: Optional[Any] = None
        self._app_transport: Optional[SSLTransport] = None
        self._app_protocol: Optional[asyncio.BaseProtocol] = None
        self._app_protocol_type: Optional[type] = None
        self._app_get_buffer: Optional[Callable[[int], Any]] = None
        self._app_buffer_updated: Optional[Callable[[int], object]] = None
        self._set_app_protocol(app_protocol)
        # Application data not encrypted yet (the handshake is not done, or the TLS layer
        # wants to read first).
        self._write_backlog: collections.deque[_Data] = collections.deque()
        self._write_buffer_size = 0
        # Writes dropped since the connection closed.
        self._conn_lost = 0
        self._handshake_timer: Optional[asyncio.TimerHandle] = None
        self._shutdown_timer: Optional[asyncio.TimerHandle] = None
        self._handshake_started_at: Optional[float] = None
        # Flow control, four ways: the plain transport asked us to stop writing to it; the
        # application paused reading; we paused the plain transport's reading; we asked the
        # application to stop writing.
        self._ssl_writing_paused = False
        self._app_reading_paused = False
        self._ssl_reading_paused = False
        self._app_writing_paused = False
        self._incoming_high_water, self._incoming_low_water = _flow_limits(
            None, None, READ_HIGH_WATER
        )
        self._outgoing_high_water, self._outgoing_low_water = _flow_limits(
            None, None, WRITE_HIGH_WATER
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state.value.lower()} transport={self._transport!r}>"

    def _set_app_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app_protocol = protocol
        self._app_protocol_type = type(protocol)
        # As the plain transports: a protocol with get_buffer() is read as a buffered one.
        if hasattr(protocol, "get_buffer"):
            self._app_get_buffer = protocol.get_buffer
            self._app_buffer_updated = protocol.buffer_updated  # type: ignore[attr-defined]
        else:
            self._app_get_buffer = self._app_buffer_updated = None

    def _get_app_transport(self, context: Optional[contextvars.Context] = None) -> SSLTransport:
        """The application's transport, made once; its callbacks run in ``context`` (the plain
        transport's)."""
        if self._app_transport is None:
            if context is not None:
                self._context = context
            self._app_transport = SSLTransport(self._loop, self, self._context)
        return self._app_transport

    def _get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._extra:
            return self._extra[name]
        if name == "uvloop.sslproto":
            # uvloop's name for this object, for code written against uvloop.
            return self
        if self._transport is not None:
            return self._transport.get_extra_info(name, default)
        return default

    def _set_state(self, state: _State) -> None:
        if state is not _State.UNWRAPPED and state not in _NEXT_STATES[self._state]:
            raise RuntimeError(f"cannot switch state from {self._state} to {state}")
        self._state = state

    def _wakeup_waiter(self, exc: Optional[BaseException] = None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

    # -- the plain transport's callbacks ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._start_handshake()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._write_backlog.clear()
        self._write_buffer_size = 0
        self._outgoing.read()
        self._conn_lost += 1
        if self._app_transport is not None:
            self._app_transport._closed = True
        app = self._app_protocol
        if (
            self._state is not _State.DO_HANDSHAKE
            and self._app_state in (_AppState.CONNECTED, _AppState.EOF)
            and app is not None
        ):
            self._app_state = _AppState.LOST
            self._loop.call_soon(
                app.connection_lost, exc, context=self._context  # type: ignore[arg-type]
            )
        self._set_state(_State.UNWRAPPED)
        # Nothing refers back to the application or the transports once the connection is
        # gone: no cycle keeps them (and the SSL context) alive until a garbage collection.
        self._transport = None
        self._app_transport = None
        self._app_protocol = None
        self._app_get_buffer = self._app_buffer_updated = None
        self._wakeup_waiter(exc)
        self._cancel_timers()

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state is _State.UNWRAPPED:
            return  # aborted: the plain transport is closing
        self._incoming.write(data)
        if state is _State.WRAPPED:
            self._do_read()
        elif state is _State.DO_HANDSHAKE:
            self._do_handshake()
        elif state is _State.FLUSHING:
            self._do_flush()
        else:
            self._do_shutdown()

    def eof_received(self) -> None:
        # An EOF without close_notify is a broken connection, not the application's EOF:
        # whatever the application wrote still goes out, then the transport closes, without
        # eof_received() (data the application did not read yet is dropped).
        try:
            if self._loop.get_debug():
                logger.debug("%r received EOF", self)
            state = self._state
            if state is _State.DO_HANDSHAKE:
                self._on_handshake_complete(
                    ConnectionResetError("Connection lost during the SSL handshake")
                )
            elif state is _State.WRAPPED or state is _State.FLUSHING:
                self._set_state(_State.SHUTDOWN)
                self._do_write()
                if self._outgoing.pending and self._transport is not None:
                    # Paused or not: the transport's close() sends what it holds.
                    self._transport.write(self._outgoing.read())
                self._on_shutdown_complete(None)
            elif state is _State.SHUTDOWN:
                self._on_shutdown_complete(None)
        except Exception:
            if self._transport is not None:
                self._transport.close()
            raise

    def pause_writing(self) -> None:
        self._ssl_writing_paused = True

    def resume_writing(self) -> None:
        self._ssl_writing_paused = False
        state = self._state
        if state is _State.WRAPPED:
            self._process_outgoing()
            self._control_app_writing()
        elif state is _State.FLUSHING:
            self._do_flush()
        elif state is _State.SHUTDOWN:
            self._do_shutdown()

    # -- handshake --------------------------------------------------------------------------

    def _start_handshake(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r starts SSL handshake", self)
            self._handshake_started_at = self._loop.time()
        self._set_state(_State.DO_HANDSHAKE)
        self._handshake_timer = self._loop.call_later(
            self._handshake_timeout, self._check_handshake_timeout, context=self._context
        )
        self._do_handshake()

    def _check_handshake_timeout(self) -> None:
        self._handshake_timer = None
        if self._state is _State.DO_HANDSHAKE:
            self._fatal_error(ConnectionAbortedError(
                f"SSL handshake is taking longer than {self._handshake_timeout} seconds: "
                "aborting the connection"
            ))

    def _do_handshake(self) -> None:
        try:
            self._sslobj.do_handshake()
        except _AGAIN:
            self._process_outgoing()
        except ssl.SSLError as exc:
            self._on_handshake_complete(exc)
        else:
            self._on_handshake_complete(None)

    def _on_handshake_complete(self, handshake_exc: Optional[BaseException]) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        sslobj = self._sslobj
        try:
            if handshake_exc is not None:
                raise handshake_exc
            self._set_state(_State.WRAPPED)
            peercert = sslobj.getpeercert()
        except Exception as exc:
            self._set_state(_State.UNWRAPPED)
            transport = self._transport
            if transport is not None and not transport.is_closing():
                # The alert saying why (an unknown CA, say) goes to the peer first, if the
                # socket takes it at once: the connection is aborted next.
                self._process_outgoing()
            if isinstance(exc, ssl.CertificateError):
                message = "SSL handshake failed on verifying the certificate"
            else:
                message = "SSL handshake failed"
            self._fatal_error(exc, message)
            self._wakeup_waiter(exc)
            return
        finally:
            handshake_exc = None  # no traceback cycle through this frame
        if self._loop.get_debug() and self._handshake_started_at is not None:
            took = self._loop.time() - self._handshake_started_at
            logger.debug("%r: SSL handshake took %.1f ms", self, took * 1e3)
        self._extra.update(
            peercert=peercert, cipher=sslobj.cipher(), compression=sslobj.compression(),
            ssl_object=sslobj,
        )
        if self._app_state is _AppState.INIT:
            self._app_state = _AppState.CONNECTED
            assert self._app_protocol is not None
            self._app_protocol.connection_made(self._get_app_transport())
        self._wakeup_waiter()
        # Data that came with the end of the handshake waits for a later callback: the
        # waiter's come first, so start_tls()'s caller holds the new transport (to check
        # ALPN, or to write through it) before the protocol hears anything.
        self._loop.call_soon(self._do_read, context=self._context)

    # -- closing ----------------------------------------------------------------------------

    def _start_shutdown(self, context: Optional[contextvars.Context] = None) -> None:
        """The application's close(). ``context``: the one to run application callbacks in
        (copied), None when already in it."""
        state = self._state
        if state in (_State.FLUSHING, _State.SHUTDOWN, _State.UNWRAPPED):
            return
        if self._app_transport is not None:
            self._app_transport._closed = True
        if state is _State.DO_HANDSHAKE:
            self._abort(None)
            return
        self._set_state(_State.FLUSHING)
        self._shutdown_timer = self._loop.call_later(
            self._shutdown_timeout, self._check_shutdown_timeout, context=self._context
        )
        self._do_flush(context)

    def _check_shutdown_timeout(self) -> None:
        self._shutdown_timer = None
        if self._state in (_State.FLUSHING, _State.SHUTDOWN) and self._transport is not None:
            self._transport._force_close(asyncio.TimeoutError("SSL shutdown timed out"))

    def _do_flush(self, context: Optional[contextvars.Context] = None) -> None:
        """FLUSHING: what the application wrote goes out (received data is dropped); then
        close_notify. No pause_writing()/resume_writing() for the application any more."""
        try:
            self._read_into_void(context)
            if self._state is not _State.FLUSHING:
                return  # eof_received() aborted
            self._do_write()
            self._process_outgoing()
            self._control_ssl_reading()
        except Exception as exc:
            self._on_shutdown_complete(exc)
            return
        if not self._get_write_buffer_size():
            self._set_state(_State.SHUTDOWN)
            self._do_shutdown(context)

    def _do_shutdown(self, context: Optional[contextvars.Context] = None) -> None:
        """SHUTDOWN: close_notify out, waiting for the peer's (data before it is dropped)."""
        try:
            self._read_into_void(context)
            if self._state is not _State.SHUTDOWN:
                return
            try:
                self._sslobj.unwrap()
            except _AGAIN:
                self._process_outgoing()
            else:
                self._process_outgoing()
                if not self._get_write_buffer_size():
                    self._on_shutdown_complete(None)
        except Exception as exc:
            self._on_shutdown_complete(exc)

    def _read_into_void(self, context: Optional[contextvars.Context]) -> None:
        """Decrypts and drops application data; close_notify is the application's EOF."""
        _, close_notify = self._decrypt(keep=False)
        if close_notify:
            self._call_eof_received(context)

    def _decrypt(self, keep: bool) -> tuple[list[bytes], bool]:
        """Decrypts what is pending: the application data (kept, or dropped), and whether the
        peer's close_notify came."""
        incoming, sslobj = self._incoming, self._sslobj
        chunks: list[bytes] = []
        try:
            # Checking what is pending saves the SSLWantReadError a read of nothing raises.
            while incoming.pending or sslobj.pending():
                chunk = sslobj.read(READ_MAX_SIZE)
                if not chunk:
                    return chunks, True
                if keep:
                    chunks.append(chunk)
        except _AGAIN:
            pass
        except ssl.SSLZeroReturnError:
            return chunks, True
        return chunks, False

    def _on_shutdown_complete(self, exc: Optional[BaseException]) -> None:
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
        if exc is not None:
            self._fatal_error(exc, "Error occurred during shutdown")
        elif self._transport is not None:
            self._transport.close()

    def _abort(self, exc: Optional[BaseException]) -> None:
        self._set_state(_State.UNWRAPPED)
        if self._transport is not None:
            self._transport._force_close(exc)

    def _cancel_timers(self) -> None:
        for timer in (self._handshake_timer, self._shutdown_timer):
            if timer is not None:
                timer.cancel()
        self._handshake_timer = self._shutdown_timer = None

    # -- writing ----------------------------------------------------------------------------

    def _write_appdata(self, data: _Data, context: contextvars.Context) -> None:
        if self._state in (_State.FLUSHING, _State.SHUTDOWN, _State.UNWRAPPED):
            if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("SSL connection is closed")
            self._conn_lost += 1
            return
        self._write_backlog.append(data)
        self._write_buffer_size += _nbytes(data)
        try:
            if self._state is _State.WRAPPED:
                self._do_write()
                self._process_outgoing()
                self._control_app_writing(context)
            backlog = self._write_backlog
            # What is kept for later (the handshake is not done, or the TLS layer must read
            # first) is copied: the caller may reuse its buffer (sendfile's fallback does).
            for index in range(len(backlog)):
                if not isinstance(backlog[index], bytes):
                    backlog[index] = bytes(backlog[index])
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _do_write(self) -> None:
        """Encrypts the backlog into the outgoing BIO (all of it, unless the TLS layer must
        read first)."""
        backlog, write = self._write_backlog, self._sslobj.write
        try:
            while backlog:
                data = backlog[0]
                size = _nbytes(data)
                taken = write(data)
                if taken < size:
                    backlog[0] = memoryview(data).cast("B")[taken:]
                    self._write_buffer_size -= taken
                else:
                    backlog.popleft()
                    self._write_buffer_size -= size
        except _AGAIN:
            pass

    def _process_outgoing(self) -> None:
        """Hands what the TLS layer produced to the plain transport (unless it said to wait)."""
        if (
            not self._ssl_writing_paused
            and self._outgoing.pending
            and self._transport is not None
        ):
            self._transport.write(self._outgoing.read())

    def _get_write_buffer_size(self) -> int:
        return self._outgoing.pending + self._write_buffer_size

    def _set_write_buffer_limits(
        self, high: Optional[int] = None, low: Optional[int] = None
    ) -> None:
        self._outgoing_high_water, self._outgoing_low_water = _flow_limits(
            high, low, WRITE_HIGH_WATER
        )

    def _control_app_writing(self, context: Optional[contextvars.Context] = None) -> None:
        """pause_writing()/resume_writing() of the application, as its unsent data crosses the
        limits. ``context``: run them in a copy of it (None: already in it)."""
        size = self._get_write_buffer_size()
        app = self._app_protocol
        if app is None:
            return
        if size >= self._outgoing_high_water and not self._app_writing_paused:
            self._app_writing_paused = True
            self._call_flow_control(app.pause_writing, context, "protocol.pause_writing() failed")
        elif size <= self._outgoing_low_water and self._app_writing_paused:
            self._app_writing_paused = False
            self._call_flow_control(
                app.resume_writing, context, "protocol.resume_writing() failed"
            )

    def _call_flow_control(
        self, method: Callable[[], object], context: Optional[contextvars.Context], message: str
    ) -> None:
        try:
            if context is None:
                method()
            else:
                # A copy: the caller may be running in the context itself.
                context.copy().run(method)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": message, "exception": exc, "transport": self._app_transport,
                "protocol": self,
            })

    # -- reading ----------------------------------------------------------------------------

    def _do_read(self) -> None:
        """WRAPPED: decrypts what came in for the application (unless it paused reading), and
        sends what the TLS layer has to say."""
        if self._state is not _State.WRAPPED:
            return
        try:
            if not self._app_reading_paused:
                if self._app_get_buffer is not None:
                    self._read_into_app_buffer()
                else:
                    self._read_for_data_received()
                if self._state is not _State.WRAPPED:
                    return
            if self._write_backlog:
                self._do_write()
            self._process_outgoing()
            self._control_app_writing()
            self._control_ssl_reading()
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _read_for_data_received(self) -> None:
        chunks, close_notify = self._decrypt(keep=True)
        if chunks:
            assert self._app_protocol is not None
            self._app_protocol.data_received(  # type: ignore[attr-defined]
                chunks[0] if len(chunks) == 1 else b"".join(chunks)
            )
        if close_notify:
            self._call_eof_received()
            self._start_shutdown()

    def _read_into_app_buffer(self) -> None:
        incoming, sslobj = self._incoming, self._sslobj
        pending = incoming.pending + sslobj.pending()
        if not pending:
            return
        assert self._app_get_buffer is not None and self._app_buffer_updated is not None
        # A little over the ciphertext's size: the plaintext of what is there fits.
        view = memoryview(self._app_get_buffer(pending + 256))
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        size = view.nbytes
        if not size:
            raise RuntimeError("get_buffer() returned an empty buffer")
        filled = 0
        close_notify = False
        try:
            while pending:
                # With a buffer, read() says how much it put there (typeshed has bytes).
                count = cast(int, sslobj.read(size - filled, view[filled:] if filled else view))
                if not count:
                    close_notify = True
                    break
                filled += count
                if filled == size:
                    # The buffer is full: the rest in a later callback, in a new buffer.
                    self._loop.call_soon(self._do_read, context=self._context)
                    break
                pending = incoming.pending + sslobj.pending()
        except _AGAIN:
            pass
        except ssl.SSLZeroReturnError:
            close_notify = True
        finally:
            view.release()
        if filled:
            self._app_buffer_updated(filled)
        if close_notify:
            self._call_eof_received()
            self._start_shutdown()

    def _call_eof_received(self, context: Optional[contextvars.Context] = None) -> None:
        """The peer's close_notify: the application's eof_received(), once."""
        if self._app_state is not _AppState.CONNECTED or self._app_protocol is None:
            return
        self._app_state = _AppState.EOF
        eof_received = self._app_protocol.eof_received  # type: ignore[attr-defined]
        try:
            keep_open = eof_received() if context is None else context.copy().run(eof_received)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Error calling eof_received()")
        else:
            if keep_open:
                logger.warning("returning true from eof_received() has no effect when using ssl")

    def _resume_reading(self) -> None:
        if self._app_reading_paused:
            self._app_reading_paused = False
            if self._state is _State.WRAPPED:
                self._loop.call_soon(self._do_read, context=self._context)

    def _set_read_buffer_limits(
        self, high: Optional[int] = None, low: Optional[int] = None
    ) -> None:
        self._incoming_high_water, self._incoming_low_water = _flow_limits(
            high, low, READ_HIGH_WATER
        )

    def _control_ssl_reading(self) -> None:
        """Pauses the plain transport while too much ciphertext waits (the application is not
        reading), resumes it once that went under the low limit."""
        transport = self._transport
        if transport is None:
            return
        size = self._incoming.pending
        if size >= self._incoming_high_water and not self._ssl_reading_paused:
            self._ssl_reading_paused = True
            transport.pause_reading()
        elif size <= self._incoming_low_water and self._ssl_reading_paused:
            self._ssl_reading_paused = False
            transport.resume_reading()

    # -- errors -----------------------------------------------------------------------------

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        if self._app_transport is not None:
            self._app_transport._force_close(exc)
        elif self._transport is not None:
            self._transport._force_close(exc)
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        elif not isinstance(exc, asyncio.CancelledError):
            self._loop.call_exception_handler({
                "message": message, "exception": exc, "transport": self._transport,
                "protocol": self,
            })
