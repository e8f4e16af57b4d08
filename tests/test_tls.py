"""TLS connections on the native loop, with uvloop's semantics: echo through streams, Protocol
and BufferedProtocol; callbacks in the connection's context (also after start_tls); close()
flushes, then close_notify, with a shutdown timeout; data after close() and an EOF without
close_notify; cancelling or timing out a handshake; the arguments asyncio refuses. Real sockets
on 127.0.0.1, certificates from a throwaway CA (trustme); peers that must misbehave are
blocking ``ssl`` sockets in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import ssl
import tempfile
import threading
from typing import Any, Awaitable, Callable, Iterator, Optional, TypeVar

import pytest
from monitored_ioloop.loop import Loop

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
LOCALHOST = "127.0.0.1"
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not one repeated byte

where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="outer")


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def server_ctx(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", LOCALHOST).configure_cert(context)
    return context


@pytest.fixture
def client_ctx(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def run_within(loop: Loop, awaitable: Awaitable[T], timeout: float = 15.0) -> T:
    return loop.run_until_complete(asyncio.wait_for(awaitable, timeout))


@contextlib.contextmanager
def thread_peer(serve: Callable[[socket.socket], None]) -> Iterator[tuple[str, int]]:
    """A listening socket whose one connection ``serve`` handles (blocking) in a thread; an
    exception there fails the test."""
    errors: list[BaseException] = []
    listener = socket.create_server((LOCALHOST, 0))
    listener.settimeout(10)

    def main() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                serve(conn)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        thread.join(10)
        listener.close()
    if errors:
        raise errors[0]


class Recorder(asyncio.Protocol):
    """Keeps what it receives and the value of ``where`` at each callback."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.seen: dict[str, str] = {}
        self.received = bytearray()
        self.eof = loop.create_future()
        self.lost: asyncio.Future[Optional[BaseException]] = loop.create_future()
        self.paused = loop.create_future()
        self.resumed = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.seen["connection_made"] = where.get()

    def data_received(self, data: bytes) -> None:
        self.seen.setdefault("data_received", where.get())
        self.received += data

    def eof_received(self) -> None:
        self.seen["eof_received"] = where.get()
        self.eof.set_result(None)

    def pause_writing(self) -> None:
        self.seen["pause_writing"] = where.get()
        self.paused.set_result(None)

    def resume_writing(self) -> None:
        self.seen["resume_writing"] = where.get()
        self.resumed.set_result(None)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.seen["connection_lost"] = where.get()
        self.lost.set_result(exc)


class Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class OneConnection:
    """A server's protocol factory for one connection: ``made`` resolves with its Recorder."""

    def __init__(self) -> None:
        self.made: asyncio.Future[Recorder] = asyncio.get_running_loop().create_future()

    def __call__(self) -> Recorder:
        proto = Recorder()
        self.made.set_result(proto)
        return proto


# -- data both ways --------------------------------------------------------------------------


def test_streams_echo_a_megabyte_over_tls(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(len(PAYLOAD)))
        await writer.drain()
        writer.close()

    async def main() -> bytes:
        server = await asyncio.start_server(handle, LOCALHOST, 0, ssl=server_ctx)
        reader, writer = await asyncio.open_connection(
            *server.sockets[0].getsockname(), ssl=client_ctx, server_hostname="localhost"
        )
        writer.write(PAYLOAD)
        echoed = await reader.readexactly(len(PAYLOAD))
        at_end = await reader.read()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return echoed + at_end

    assert run_within(loop, main()) == PAYLOAD


def test_a_protocol_gets_an_echo_then_close_notify_as_eof_received(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    class CloseAfterEcho(Echo):
        def data_received(self, data: bytes) -> None:
            self.transport.write(data)
            self.transport.close()

    async def main() -> tuple[bytes, Optional[BaseException]]:
        server = await loop.create_server(CloseAfterEcho, LOCALHOST, 0, ssl=server_ctx)
        transport, proto = await loop.create_connection(
            Recorder, *server.sockets[0].getsockname(), ssl=client_ctx,
            server_hostname="localhost",
        )
        transport.write(b"ping")
        await proto.eof
        exc = await proto.lost
        server.close()
        await server.wait_closed()
        return bytes(proto.received), exc

    assert run_within(loop, main()) == (b"ping", None)


def test_a_buffered_protocol_gets_everything_through_a_small_buffer(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    class SmallBuffer(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buffer = bytearray(7)
            self.received = bytearray()
            self.eof = asyncio.get_running_loop().create_future()

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buffer

        def buffer_updated(self, nbytes: int) -> None:
            self.received += self.buffer[:nbytes]

        def eof_received(self) -> None:
            self.eof.set_result(None)

    class SendAndClose(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(PAYLOAD[:100_000])
            transport.close()

    async def main() -> bytes:
        server = await loop.create_server(SendAndClose, LOCALHOST, 0, ssl=server_ctx)
        transport, proto = await loop.create_connection(
            SmallBuffer, *server.sockets[0].getsockname(), ssl=client_ctx,
            server_hostname="localhost",
        )
        await proto.eof
        transport.close()
        server.close()
        await server.wait_closed()
        return bytes(proto.received)

    assert run_within(loop, main()) == PAYLOAD[:100_000]


def test_a_unix_socket_carries_tls_too(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        writer.close()

    async def main(path: str) -> bytes:
        server = await asyncio.start_unix_server(handle, path, ssl=server_ctx)
        reader, writer = await asyncio.open_unix_connection(
            path, ssl=client_ctx, server_hostname="localhost"
        )
        writer.write(b"ping")
        data = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return data

    with tempfile.TemporaryDirectory() as tmp:
        assert run_within(loop, main(f"{tmp}/tls.sock")) == b"ping"


def test_extra_info_describes_the_tls_session(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def main() -> dict[str, Any]:
        server_side = OneConnection()
        server = await loop.create_server(server_side, LOCALHOST, 0, ssl=server_ctx)
        address = server.sockets[0].getsockname()
        transport, _ = await loop.create_connection(
            asyncio.Protocol, *address, ssl=client_ctx, server_hostname="localhost"
        )
        info = {name: transport.get_extra_info(name) for name in (
            "sslcontext", "ssl_object", "peercert", "cipher", "peername", "socket",
        )}
        transport.close()
        await (await server_side.made).lost
        server.close()
        await server.wait_closed()
        info["address"] = address
        return info

    info = run_within(loop, main())
    assert info["sslcontext"] is client_ctx
    assert isinstance(info["ssl_object"], ssl.SSLObject)
    assert ("DNS", "localhost") in info["peercert"]["subjectAltName"]
    assert info["cipher"][1].startswith("TLS")
    assert info["peername"] == info["address"]
    assert info["socket"].family == socket.AF_INET


def test_sendfile_writes_a_file_through_tls(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(len(PAYLOAD)))
        writer.close()

    async def main(file: Any) -> tuple[int, bytes]:
        server = await asyncio.start_server(handle, LOCALHOST, 0, ssl=server_ctx)
        reader, writer = await asyncio.open_connection(
            *server.sockets[0].getsockname(), ssl=client_ctx, server_hostname="localhost"
        )
        sent = await loop.sendfile(writer.transport, file)
        echoed = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return sent, echoed

    with tempfile.TemporaryFile() as file:
        file.write(PAYLOAD)
        file.seek(0)
        assert run_within(loop, main(file)) == (len(PAYLOAD), PAYLOAD)


# -- contexts ----------------------------------------------------------------------------------


def test_client_callbacks_run_in_the_context_of_create_connection(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    class Server(asyncio.Protocol):
        """Reads nothing until told, so that the client's writes back up."""

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            transport.pause_reading()
            transport.write(b"hello")

        def data_received(self, data: bytes) -> None:
            pass

    servers: list[Server] = []

    def server_factory() -> Server:
        servers.append(Server())
        return servers[-1]

    async def main() -> dict[str, str]:
        server = await loop.create_server(server_factory, LOCALHOST, 0, ssl=server_ctx)
        where.set("creator")
        transport, proto = await loop.create_connection(
            Recorder, *server.sockets[0].getsockname(), ssl=client_ctx,
            server_hostname="localhost",
        )

        async def write_until_paused() -> None:
            where.set("writer")
            transport.set_write_buffer_limits(high=256, low=128)
            while not proto.paused.done():
                transport.write(b"q" * 65536)
                await asyncio.sleep(0)

        while not proto.received:  # the server's hello
            await asyncio.sleep(0.01)
        await loop.create_task(write_until_paused())
        servers[0].transport.resume_reading()
        await proto.resumed
        servers[0].transport.close()  # close_notify: the client's eof_received()
        await proto.eof
        await proto.lost
        server.close()
        await server.wait_closed()
        return proto.seen

    seen = run_within(loop, main())
    assert seen == {name: "creator" for name in (
        "connection_made", "data_received", "pause_writing", "resume_writing", "eof_received",
        "connection_lost",
    )}


def test_each_server_connection_runs_in_its_own_copy_of_the_create_server_context(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    seen: list[str] = []

    class Marker(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            seen.append(where.get())
            where.set("changed by an earlier connection")
            transport.close()

    async def main() -> None:
        where.set("server")
        server = await loop.create_server(Marker, LOCALHOST, 0, ssl=server_ctx)
        where.set("after create_server")
        for _ in range(2):
            reader, writer = await asyncio.open_connection(
                *server.sockets[0].getsockname(), ssl=client_ctx, server_hostname="localhost"
            )
            await reader.read()
            writer.close()
        server.close()
        await server.wait_closed()

    run_within(loop, main())
    assert seen == ["server", "server"]


def test_after_start_tls_callbacks_still_run_in_the_connection_context(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    class StartTlsServer(asyncio.Protocol):
        """Answers a plain b"tls?" by starting TLS as the server."""

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            assert data == b"tls?"
            self.transport.write(b"ok")
            task = loop.create_task(loop.start_tls(
                self.transport, self, server_ctx, server_side=True
            ))
            task.add_done_callback(self.upgraded)

        def upgraded(self, task: asyncio.Task[Any]) -> None:
            task.result().write(b"secret")

    async def main() -> tuple[bytes, dict[str, str]]:
        server = await loop.create_server(StartTlsServer, LOCALHOST, 0)
        where.set("creator")
        transport, proto = await loop.create_connection(
            Recorder, *server.sockets[0].getsockname()
        )
        transport.write(b"tls?")
        while bytes(proto.received) != b"ok":
            await asyncio.sleep(0.01)
        proto.received.clear()
        where.set("upgrader")
        tls_transport = await loop.start_tls(
            transport, proto, client_ctx, server_hostname="localhost"
        )
        while bytes(proto.received) != b"secret":
            await asyncio.sleep(0.01)
        tls_transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()
        return bytes(proto.received), proto.seen

    received, seen = run_within(loop, main())
    assert received == b"secret"
    assert seen == {name: "creator" for name in (
        "connection_made", "data_received", "eof_received", "connection_lost",
    )}


# -- closing -----------------------------------------------------------------------------------


def test_close_sends_everything_written_before_close_notify(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    class Counter(asyncio.Protocol):
        def __init__(self) -> None:
            self.count = 0
            self.at_eof = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            self.count += len(data)

        def eof_received(self) -> None:
            self.at_eof.set_result(self.count)

    counters: list[Counter] = []

    def factory() -> Counter:
        counters.append(Counter())
        return counters[-1]

    async def main() -> int:
        server = await loop.create_server(factory, LOCALHOST, 0, ssl=server_ctx)
        transport, proto = await loop.create_connection(
            Recorder, *server.sockets[0].getsockname(), ssl=client_ctx,
            server_hostname="localhost",
        )
        for _ in range(4):
            transport.write(PAYLOAD)
        transport.close()
        count = await counters[0].at_eof
        await proto.lost
        server.close()
        await server.wait_closed()
        return count

    assert run_within(loop, main()) == 4 * len(PAYLOAD)


def test_data_unread_at_close_is_dropped(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    class SendThenWait(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(b"unwanted")

    async def main() -> tuple[bytes, Optional[BaseException]]:
        server = await loop.create_server(SendThenWait, LOCALHOST, 0, ssl=server_ctx)
        transport, proto = await loop.create_connection(
            Recorder, *server.sockets[0].getsockname(), ssl=client_ctx,
            server_hostname="localhost",
        )
        transport.pause_reading()
        await asyncio.sleep(0.05)  # lets the data arrive; not asserted on
        transport.close()
        transport.resume_reading()
        exc = await proto.lost
        server.close()
        await server.wait_closed()
        return bytes(proto.received), exc

    assert run_within(loop, main()) == (b"", None)


def test_abort_loses_the_connection_at_once_without_close_notify(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    async def main() -> tuple[Optional[BaseException], bool, bool]:
        server_side = OneConnection()
        server = await loop.create_server(server_side, LOCALHOST, 0, ssl=server_ctx)
        transport, proto = await loop.create_connection(
            Recorder, *server.sockets[0].getsockname(), ssl=client_ctx,
            server_hostname="localhost",
        )
        peer = await server_side.made
        transport.write(PAYLOAD * 4)
        transport.abort()
        closing = transport.is_closing()
        exc = await proto.lost
        await peer.lost
        server.close()
        await server.wait_closed()
        return exc, closing, peer.eof.done()

    # The peer sees the connection end without close_notify: no eof_received() there.
    assert run_within(loop, main()) == (None, True, False)


def test_a_peer_that_never_answers_close_notify_times_out(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    done = threading.Event()

    def serve(conn: socket.socket) -> None:
        tls = server_ctx.wrap_socket(conn, server_side=True)
        assert tls.recv(1024) == b""  # the client's close_notify; never answered
        done.wait(10)

    async def main(address: tuple[str, int]) -> Optional[BaseException]:
        # Through start_tls: asyncio's create_connection takes ssl_shutdown_timeout from 3.11
        # on only, the loop's start_tls on every version.
        plain, proto = await loop.create_connection(Recorder, *address)
        transport = await loop.start_tls(
            plain, proto, client_ctx, server_hostname="localhost", ssl_shutdown_timeout=0.2
        )
        transport.close()
        return await proto.lost

    with thread_peer(serve) as address:
        try:
            exc = run_within(loop, main(address))
        finally:
            done.set()
    assert isinstance(exc, asyncio.TimeoutError)
    assert str(exc) == "SSL shutdown timed out"


def test_an_eof_without_close_notify_loses_the_connection_without_eof_received(
    loop: Loop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    def serve(conn: socket.socket) -> None:
        tls = server_ctx.wrap_socket(conn, server_side=True)
        tls.sendall(b"hi")
        tls.shutdown(socket.SHUT_WR)  # TCP's FIN: SSLSocket.shutdown() sends no close_notify
        tls.recv(1024)

    async def main(address: tuple[str, int]) -> tuple[bytes, Optional[BaseException], bool]:
        _, proto = await loop.create_connection(
            Recorder, *address, ssl=client_ctx, server_hostname="localhost"
        )
        exc = await proto.lost
        return bytes(proto.received), exc, proto.eof.done()

    with thread_peer(serve) as address:
        assert run_within(loop, main(address)) == (b"hi", None, False)


# -- the handshake -----------------------------------------------------------------------------


def test_cancelling_create_connection_during_the_handshake_closes_the_socket(
    loop: Loop, client_ctx: ssl.SSLContext
) -> None:
    made: list[Any] = []

    class Never(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            made.append(transport)

    async def main() -> bytes:
        with socket.create_server((LOCALHOST, 0)) as listener:
            listener.setblocking(False)
            connecting = loop.create_task(loop.create_connection(
                Never, *listener.getsockname(), ssl=client_ctx, server_hostname="localhost"
            ))
            peer, _ = await loop.sock_accept(listener)
        with peer:
            peer.setblocking(False)
            assert await loop.sock_recv(peer, 65536)  # the ClientHello: handshake under way
            connecting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await connecting
            rest = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := await loop.sock_recv(peer, 65536):
                    rest += chunk
            return rest

    assert run_within(loop, main()) == b""  # the client hung up, nothing more sent
    assert made == []


def test_a_handshake_past_its_timeout_aborts_the_connection(
    loop: Loop, client_ctx: ssl.SSLContext
) -> None:
    async def main() -> None:
        with socket.create_server((LOCALHOST, 0)) as listener:
            await loop.create_connection(
                asyncio.Protocol, *listener.getsockname(), ssl=client_ctx,
                server_hostname="localhost", ssl_handshake_timeout=0.1,
            )

    with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"):
        run_within(loop, main())


def test_an_untrusted_certificate_fails_create_connection_and_tells_the_peer(
    loop: Loop, server_ctx: ssl.SSLContext
) -> None:
    peer_saw: list[BaseException] = []

    def serve(conn: socket.socket) -> None:
        try:
            server_ctx.wrap_socket(conn, server_side=True)
        except ssl.SSLError as exc:
            peer_saw.append(exc)

    async def main(address: tuple[str, int]) -> None:
        await loop.create_connection(
            asyncio.Protocol, *address, ssl=ssl.create_default_context(),
            server_hostname="localhost",
        )

    with thread_peer(serve) as address:
        with pytest.raises(ssl.SSLCertVerificationError):
            run_within(loop, main(address))
    assert [exc.reason for exc in peer_saw] == ["TLSV1_ALERT_UNKNOWN_CA"]


# -- bad arguments, as asyncio refuses them --------------------------------------------------


def test_ssl_handshake_timeout_without_ssl_is_refused(loop: Loop) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="only meaningful with ssl"):
            await loop.create_connection(
                asyncio.Protocol, LOCALHOST, 1, ssl_handshake_timeout=1.0
            )
        with pytest.raises(ValueError, match="only meaningful with ssl"):
            await loop.create_server(asyncio.Protocol, LOCALHOST, 0, ssl_handshake_timeout=1.0)

    run_within(loop, main())


@pytest.mark.parametrize("option", ["ssl_handshake_timeout", "ssl_shutdown_timeout"])
@pytest.mark.parametrize("value", [0, -1.5])
def test_a_timeout_that_is_not_positive_is_refused(
    loop: Loop, client_ctx: ssl.SSLContext, option: str, value: float
) -> None:
    async def main() -> None:
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=left)
        try:
            with pytest.raises(ValueError, match=f"{option} should be a positive number"):
                await loop.start_tls(
                    transport, transport.get_protocol(), client_ctx,
                    server_hostname="localhost", **{option: value},
                )
        finally:
            transport.close()

    left, right = socket.socketpair()
    with left, right:
        run_within(loop, main())


def test_start_tls_wants_an_ssl_context_and_a_stream_transport(
    loop: Loop, client_ctx: ssl.SSLContext
) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="SSLContext, got"):
            await loop.start_tls(None, None, None)  # type: ignore[arg-type]
        transport, protocol = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(LOCALHOST, 0)
        )
        try:
            with pytest.raises(TypeError, match="is not supported by start_tls"):
                await loop.start_tls(transport, protocol, client_ctx)
        finally:
            transport.close()

    run_within(loop, main())


# -- monitoring --------------------------------------------------------------------------------


def test_a_tls_read_is_reported_as_the_application_protocols_data_received(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    names: list[str] = []  # read at dispatch time: the connection is open then
    monitored = Loop(monitor_callback=lambda state: names.append(state.callback_pretty_name))

    async def main() -> None:
        server_side = OneConnection()
        server = await monitored.create_server(server_side, LOCALHOST, 0, ssl=server_ctx)
        transport, _ = await monitored.create_connection(
            asyncio.Protocol, *server.sockets[0].getsockname(), ssl=client_ctx,
            server_hostname="localhost",
        )
        proto = await server_side.made
        transport.write(b"ping")
        while not proto.received:
            await asyncio.sleep(0.01)
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    try:
        run_within(monitored, main())
    finally:
        monitored.close()
    assert "Recorder.data_received" in names
