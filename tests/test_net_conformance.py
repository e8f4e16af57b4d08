"""Stream and socket behaviours uvloop's own test suite pins down, on the native loop: duck-typed
buffered protocols, a peer that sends and hangs up, sockets closed while an operation waits on
them, abort inside connection_made, and protocol callbacks run in their creator's context. Real
sockets on 127.0.0.1 and unix paths."""

from __future__ import annotations

import asyncio
import contextvars
import errno
import gc
import os
import socket
import struct
import sys
import tempfile
import threading
import time
import weakref
from typing import Any, Awaitable, Optional, TypeVar

import pytest
from monitored_ioloop.loop import Loop

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
LOCALHOST = "127.0.0.1"


def run_within(loop: Loop, awaitable: Awaitable[T], timeout: float = 10.0) -> T:
    return loop.run_until_complete(asyncio.wait_for(awaitable, timeout))


class DuckBufferedProto(asyncio.BaseProtocol):
    """Has get_buffer/buffer_updated without subclassing asyncio.BufferedProtocol."""

    def __init__(self, buffer_size: int = 50) -> None:
        self.buf = memoryview(bytearray(buffer_size))
        self.received = bytearray()
        self.eof = False
        self.lost: asyncio.Future[Optional[BaseException]] = (
            asyncio.get_running_loop().create_future()
        )

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.received += self.buf[:nbytes]

    def eof_received(self) -> None:
        self.eof = True

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost.set_result(exc)


class OneConnection:
    """A protocol factory for a server that is connected to once: ``made`` resolves with the
    protocol it built."""

    def __init__(self, proto_class: Any) -> None:
        self.proto_class = proto_class
        self.made: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def __call__(self) -> Any:
        proto = self.proto_class()
        self.made.set_result(proto)
        return proto


# -- buffered protocols ------------------------------------------------------------------------


def test_a_protocol_with_get_buffer_is_read_as_buffered_without_subclassing(loop: Loop) -> None:
    size = 123_123

    async def main() -> tuple[DuckBufferedProto, bytes]:
        factory = OneConnection(DuckBufferedProto)
        server = await loop.create_server(factory, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, (LOCALHOST, port))
            await loop.sock_sendall(client, b"a" * size)
        proto = await factory.made
        await proto.lost
        server.close()
        await server.wait_closed()
        return proto, bytes(proto.received)

    proto, received = run_within(loop, main())
    assert received == b"a" * size
    assert proto.eof


@pytest.mark.parametrize("bad_buffer", ["raises", "empty"])
def test_a_failing_get_buffer_closes_the_connection_with_runtime_error(
    loop: Loop, bad_buffer: str
) -> None:
    class BadBuffer(DuckBufferedProto):
        def get_buffer(self, sizehint: int) -> memoryview:
            if bad_buffer == "raises":
                raise ZeroDivisionError
            return memoryview(bytearray(0))

    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    async def main() -> Optional[BaseException]:
        factory = OneConnection(BadBuffer)
        server = await loop.create_server(factory, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, (LOCALHOST, port))
            await loop.sock_sendall(client, b"a")
            exc = await (await factory.made).lost
        server.close()
        await server.wait_closed()
        return exc

    exc = run_within(loop, main())
    assert isinstance(exc, RuntimeError)
    assert "get_buffer()" in str(exc)
    assert len(reported) == 1


def test_a_unix_peer_that_sends_past_the_buffer_and_hangs_up_is_read_to_the_end(
    loop: Loop,
) -> None:
    async def main(path: str) -> DuckBufferedProto:
        factory = OneConnection(DuckBufferedProto)
        server = await loop.create_unix_server(factory, path)
        with socket.socket(socket.AF_UNIX) as client:
            client.setblocking(False)
            await loop.sock_connect(client, path)
            await loop.sock_sendall(client, b"a" * 51)  # one more than the buffer holds
        proto: DuckBufferedProto = await factory.made
        assert await proto.lost is None
        server.close()
        await server.wait_closed()
        return proto

    with tempfile.TemporaryDirectory() as tmp:
        proto = run_within(loop, main(os.path.join(tmp, "sock")))
    assert bytes(proto.received) == b"a" * 51
    assert proto.eof


# -- sockets closed while an operation waits on them ---------------------------------------------


def delayed_sender(delay: float, payload: bytes) -> tuple[socket.socket, threading.Thread]:
    """A listening socket whose one client gets ``payload`` after ``delay`` seconds."""
    listener = socket.socket()
    listener.bind((LOCALHOST, 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            time.sleep(delay)
            conn.sendall(payload)
            time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("into", [False, True], ids=["sock_recv", "sock_recv_into"])
def test_closing_a_socket_a_recv_waits_on_takes_effect_when_the_recv_ends(
    loop: Loop, into: bool
) -> None:
    listener, thread = delayed_sender(0.3, b"helo")

    async def main(sock: socket.socket) -> bytes:
        await loop.sock_connect(sock, listener.getsockname())
        if into:
            buf = bytearray(10)

            async def recv() -> bytes:
                return bytes(buf[: await loop.sock_recv_into(sock, buf)])

            pending = loop.create_task(recv())
        else:
            pending = loop.create_task(loop.sock_recv(sock, 10))
        await asyncio.sleep(0.05)
        sock.close()
        assert sock.fileno() != -1  # held by the pending recv
        data = await pending
        assert sock.fileno() == -1  # and closed as it ended
        return data

    with listener, socket.socket() as sock:
        sock.setblocking(False)
        assert run_within(loop, main(sock)) == b"helo"
    thread.join()


def test_closing_a_socket_sock_connect_waits_on_lets_the_connect_finish(loop: Loop) -> None:
    async def main(sock: socket.socket, address: Any) -> None:
        connect = loop.create_task(loop.sock_connect(sock, address))
        loop.call_soon(sock.close)
        await connect

    with socket.socket() as listener, socket.socket() as sock:
        listener.bind((LOCALHOST, 0))
        listener.listen(1)
        sock.setblocking(False)
        run_within(loop, main(sock, listener.getsockname()))
        assert sock.fileno() == -1


def test_closing_the_loop_releases_a_socket_a_pending_recv_holds(loop: Loop) -> None:
    listener, thread = delayed_sender(0.5, b"")

    async def main(sock: socket.socket) -> None:
        await loop.sock_connect(sock, listener.getsockname())
        loop.create_task(loop.sock_recv(sock, 10))
        await asyncio.sleep(0.05)

    with listener, socket.socket() as sock:
        sock.setblocking(False)
        run_within(loop, main(sock))
        sock.close()
        assert sock.fileno() != -1  # the loop still holds it
        loop.close()
        assert sock.fileno() == -1
    thread.join()


def test_a_cancelled_sock_recv_lets_go_of_its_socket(loop: Loop) -> None:
    async def main(sock: socket.socket) -> tuple[bool, int]:
        pending = loop.create_task(loop.sock_recv(sock, 10))
        await asyncio.sleep(0.01)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        sock.close()
        return loop.remove_reader(sock.fileno()) if sock.fileno() != -1 else False, sock.fileno()

    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        still_watched, fileno = run_within(loop, main(left))
    assert still_watched is False
    assert fileno == -1  # nothing held it any more: closed at once


def test_a_reader_that_replaces_a_waiting_sock_recv_lets_go_of_its_socket(loop: Loop) -> None:
    # asyncio's rule: a new reader replaces the old one (whose recv then never completes).
    async def main(sock: socket.socket) -> tuple[bool, int]:
        pending = loop.create_task(loop.sock_recv(sock, 10))
        await asyncio.sleep(0.01)
        loop.add_reader(sock.fileno(), lambda: None)
        loop.remove_reader(sock.fileno())
        sock.close()
        await asyncio.sleep(0.01)
        waiting = not pending.done()
        pending.cancel()
        return waiting, sock.fileno()

    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        waiting, fileno = run_within(loop, main(left))
    assert waiting
    assert fileno == -1


def test_sock_recv_reports_a_reset_as_the_socket_module_does(loop: Loop) -> None:
    async def main(sock: socket.socket, peer: socket.socket) -> None:
        pending = loop.create_task(loop.sock_recv(sock, 10))
        await asyncio.sleep(0.01)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        await pending

    with socket.socket() as listener, socket.socket() as client:
        listener.bind((LOCALHOST, 0))
        listener.listen(1)
        client.connect(listener.getsockname())
        server_side, _ = listener.accept()
        client.setblocking(False)
        with pytest.raises(ConnectionResetError) as raised:
            run_within(loop, main(client, server_side))
        server_side.close()
        assert loop.remove_reader(client) is False
    assert raised.value.errno == errno.ECONNRESET


@pytest.mark.parametrize("size", [0, 5, 1 << 20], ids=["zero", "small", "past-the-read-buffer"])
def test_sock_recv_takes_any_size_the_socket_module_does(loop: Loop, size: int) -> None:
    async def main(sock: socket.socket, peer: socket.socket) -> bytes:
        pending = loop.create_task(loop.sock_recv(sock, size))
        await asyncio.sleep(0.01)
        peer.send(b"0123456789")
        return await pending

    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        got = run_within(loop, main(left, right))
    assert got == b"0123456789"[:size]


def test_sock_recv_with_a_bad_size_raises_as_the_socket_module_does(loop: Loop) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        with pytest.raises(ValueError):
            run_within(loop, loop.sock_recv(left, -1))
        with pytest.raises(TypeError):
            run_within(loop, loop.sock_recv(left, "10"))  # type: ignore[arg-type]


def test_sock_recv_on_a_transports_descriptor_is_refused(loop: Loop) -> None:
    async def main() -> None:
        # The server keeps its writers: on 3.13 a dropped StreamWriter closes its connection,
        # and the recv would then read the EOF at once (never waiting, never checked).
        writers: list[asyncio.StreamWriter] = []
        server = await asyncio.start_server(lambda r, w: writers.append(w), LOCALHOST, 0)
        async with server:
            transport, _ = await loop.create_connection(
                asyncio.Protocol, *server.sockets[0].getsockname()
            )
            # A plain socket object on the transport's descriptor.
            sock = socket.socket(fileno=transport.get_extra_info("socket").fileno())
            sock.setblocking(False)
            try:
                with pytest.raises(RuntimeError, match="is used by transport"):
                    await loop.sock_recv(sock, 10)
            finally:
                sock.detach()
                transport.close()
                for writer in writers:
                    writer.close()

    run_within(loop, main())


# -- transports ---------------------------------------------------------------------------------


def test_abort_in_connection_made_leaves_the_transport_without_a_socket(loop: Loop) -> None:
    class AbortAtOnce(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.abort()

    async def main() -> Any:
        server = await asyncio.start_server(lambda r, w: w.close(), LOCALHOST, 0)
        transport, _ = await loop.create_connection(
            AbortAtOnce, *server.sockets[0].getsockname()
        )
        server.close()
        await server.wait_closed()
        return transport

    transport = run_within(loop, main())
    assert transport.is_closing()
    assert transport.get_extra_info("socket") is None


def test_addresses_never_asked_for_are_still_there_after_the_connection(loop: Loop) -> None:
    # The transport reads them from the socket when first asked, or when the connection ends.
    async def main() -> tuple[Any, Any]:
        server = await asyncio.start_server(lambda r, w: w.close(), LOCALHOST, 0)
        address = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(*address)
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return writer.transport, address

    transport, address = run_within(loop, main())
    assert transport.get_extra_info("socket") is None
    assert transport.get_extra_info("peername") == address
    assert transport.get_extra_info("sockname")[0] == LOCALHOST


def test_extra_info_is_read_from_the_open_socket(loop: Loop) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, LOCALHOST, 0)
        address = server.sockets[0].getsockname()
        _, writer = await asyncio.open_connection(*address)
        transport = writer.transport
        assert transport.get_extra_info("peername") == address
        sock = transport.get_extra_info("socket")
        assert sock.getpeername() == address
        assert transport.get_extra_info("socket") is sock
        assert transport.get_extra_info("nothing", "default") == "default"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run_within(loop, main())


def test_an_accepted_peer_that_resets_keeps_its_address(loop: Loop) -> None:
    # accept() gave the address: it outlives a reset, after which getpeername() fails.
    class Keeps(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport_seen = transport

    async def main() -> tuple[Any, Any, Any]:
        factory = OneConnection(Keeps)
        server = await loop.create_server(factory, LOCALHOST, 0)
        client = socket.create_connection(server.sockets[0].getsockname())
        proto = await factory.made
        await asyncio.sleep(0.05)
        lost = loop.create_future()
        proto.connection_lost = lost.set_result
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        address = client.getsockname()
        client.close()
        exc = await lost
        server.close()
        await server.wait_closed()
        return exc, address, proto

    exc, address, proto = run_within(loop, main())
    assert isinstance(exc, ConnectionResetError)
    assert proto.transport_seen.get_extra_info("peername") == address


# -- accepting -----------------------------------------------------------------------------------


def test_a_plain_connection_is_set_up_by_the_accept_without_a_task(loop: Loop) -> None:
    # As uvloop: the protocol factory runs in the accept's own callback; asyncio would create
    # a task per connection for it.
    seen: list[Any] = []

    async def main() -> None:
        def factory() -> asyncio.Protocol:
            seen.append(asyncio.current_task())
            return asyncio.Protocol()

        server = await loop.create_server(factory, LOCALHOST, 0)
        with socket.create_connection(server.sockets[0].getsockname()):
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()

    run_within(loop, main())
    assert seen == [None]


@pytest.mark.parametrize("debug", [False, True])
def test_a_failing_protocol_factory_closes_the_connection(loop: Loop, debug: bool) -> None:
    # As asyncio: the error is reported in debug mode only; the peer sees the connection
    # closed, and the server goes on accepting.
    loop.set_debug(debug)
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    calls = 0

    def factory() -> asyncio.Protocol:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("no protocol")
        return asyncio.Protocol()

    async def main() -> bytes:
        server = await loop.create_server(factory, LOCALHOST, 0)
        address = server.sockets[0].getsockname()
        first = socket.create_connection(address)
        first.setblocking(False)
        data = await asyncio.wait_for(loop.sock_recv(first, 10), 5)
        first.close()
        with socket.create_connection(address):
            while calls < 2:
                await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        return data

    assert run_within(loop, main()) == b""
    messages = [e["message"] for e in errors if isinstance(e.get("exception"), ValueError)]
    assert messages == (["Error on transport creation for incoming connection"] if debug else [])


def test_the_loop_knows_a_transports_descriptor_until_its_connection_is_lost(loop: Loop) -> None:
    async def main() -> tuple[Any, int]:
        server = await asyncio.start_server(lambda r, w: None, LOCALHOST, 0)
        _, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        fd = writer.transport.get_extra_info("socket").fileno()
        assert loop._transports[fd] is writer.transport
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, lambda: None)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return writer.transport, fd

    transport, fd = run_within(loop, main())
    assert fd not in loop._transports
    assert loop._transports.get(fd) is None


def test_a_transport_left_open_is_collected_once_the_loop_closes() -> None:
    # The loop holds its stream transports (see TransportMap) until they are closed or it is:
    # one the user dropped is then collected, warns and closes its socket, as asyncio's.
    loop = Loop()
    try:
        async def main() -> Any:
            # Plain protocols: a dropped StreamWriter would close its transport (3.13+).
            server = await loop.create_server(asyncio.Protocol, LOCALHOST, 0)
            transport, _ = await loop.create_connection(
                asyncio.Protocol, *server.sockets[0].getsockname()
            )
            transport.pause_reading()
            server.close()
            return weakref.ref(transport)

        ref = run_within(loop, main())
    finally:
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            loop.close()
            gc.collect()
    assert ref() is None


def test_close_in_resume_writing_loses_the_connection_once(loop: Loop) -> None:
    # resume_writing() comes as the buffer drains; closing there (the TLS layer does, after
    # its last bytes went out) must not report the loss twice.
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    payload = b"x" * (4 << 20)

    class CloseOnResume(asyncio.Protocol):
        def __init__(self) -> None:
            self.lost: list[Optional[BaseException]] = []
            self.done: asyncio.Future[None] = loop.create_future()

        def connection_made(self, transport: Any) -> None:
            transport.set_write_buffer_limits(high=1, low=0)
            transport.write(payload)
            self.transport = transport

        def resume_writing(self) -> None:
            self.transport.close()

        def connection_lost(self, exc: Optional[BaseException]) -> None:
            self.lost.append(exc)
            if not self.done.done():
                self.done.set_result(None)

    async def main() -> list[Optional[BaseException]]:
        with socket.socket() as listener:
            listener.bind((LOCALHOST, 0))
            listener.listen(1)
            listener.setblocking(False)
            accepting = loop.create_task(loop.sock_accept(listener))
            _, proto = await loop.create_connection(CloseOnResume, *listener.getsockname())
            peer, _ = await accepting
        with peer:
            peer.setblocking(False)
            received = 0
            while received < len(payload):
                received += len(await loop.sock_recv(peer, 1 << 20))
            await proto.done
            for _ in range(3):
                await asyncio.sleep(0)
        return proto.lost

    assert run_within(loop, main()) == [None]
    assert errors == []


def test_a_unix_transport_socket_repr_names_its_family(loop: Loop) -> None:
    async def main(sock: socket.socket) -> str:
        transport, _ = await loop.create_unix_connection(asyncio.Protocol, sock=sock)
        text = repr(transport.get_extra_info("socket"))
        transport.close()
        return text

    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        text = run_within(loop, main(left))
    assert "family=AF_UNIX" in text and "type=SOCK_STREAM" in text


# -- protocol callbacks run in their creator's context -----------------------------------------

where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="outer")


class ContextRecorder(asyncio.Protocol):
    """Records ``where`` at each callback."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.seen["connection_made"] = where.get()

    def data_received(self, data: bytes) -> None:
        self.seen["data_received"] = where.get()

    def eof_received(self) -> None:
        self.seen["eof_received"] = where.get()

    def pause_writing(self) -> None:
        self.seen["pause_writing"] = where.get()

    def resume_writing(self) -> None:
        self.seen["resume_writing"] = where.get()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.seen["connection_lost"] = where.get()
        self.lost.set_result(None)


EVERY_CALLBACK = ["connection_made", "data_received", "pause_writing", "resume_writing",
                  "eof_received", "connection_lost"]


def test_client_protocol_callbacks_run_in_the_context_of_create_connection(loop: Loop) -> None:
    async def main() -> dict[str, str]:
        with socket.socket() as listener:
            listener.bind((LOCALHOST, 0))
            listener.listen(1)
            listener.setblocking(False)
            where.set("creator")
            accepting = loop.create_task(loop.sock_accept(listener))
            transport, proto = await loop.create_connection(
                ContextRecorder, *listener.getsockname()
            )
            peer, _ = await accepting

        async def from_elsewhere() -> None:
            where.set("elsewhere")
            transport.set_write_buffer_limits(high=256, low=128)
            while not transport.get_write_buffer_size():
                transport.write(b"q" * 65536)
            transport.resume_reading()

        with peer:
            peer.setblocking(False)
            await loop.sock_sendall(peer, b"data")
            await loop.create_task(from_elsewhere())
            while transport.get_write_buffer_size():
                await loop.sock_recv(peer, 1 << 20)
            peer.shutdown(socket.SHUT_WR)
            while "eof_received" not in proto.seen:
                await asyncio.sleep(0.01)
            transport.close()
            await proto.lost
        return proto.seen

    seen = run_within(loop, main())
    assert seen == {name: "creator" for name in EVERY_CALLBACK}


def test_server_protocol_callbacks_run_in_the_context_of_create_server(loop: Loop) -> None:
    async def main() -> dict[str, str]:
        where.set("server")
        factory = OneConnection(ContextRecorder)
        server = await loop.create_server(factory, LOCALHOST, 0)
        where.set("client")
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, server.sockets[0].getsockname())
            await loop.sock_sendall(client, b"data")
            client.shutdown(socket.SHUT_WR)
            proto: ContextRecorder = await factory.made
            while "eof_received" not in proto.seen:
                await asyncio.sleep(0.01)
            proto.transport.close()
            await proto.lost
        server.close()
        await server.wait_closed()
        return proto.seen

    seen = run_within(loop, main())
    assert seen == {
        name: "server"
        for name in ["connection_made", "data_received", "eof_received", "connection_lost"]
    }


# -- datagrams, unix servers, subprocesses -----------------------------------------------------


class DatagramRecorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.seen: dict[str, str] = {}
        self.received: asyncio.Future[tuple[bytes, Any]] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.seen["connection_made"] = where.get()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.seen["datagram_received"] = where.get()
        self.received.set_result((data, addr))

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.seen["connection_lost"] = where.get()
        self.lost.set_result(None)


def test_datagram_protocol_callbacks_run_in_the_context_of_the_endpoint_creator(
    loop: Loop,
) -> None:
    async def main() -> dict[str, str]:
        where.set("creator")
        transport, proto = await loop.create_datagram_endpoint(
            DatagramRecorder, local_addr=(LOCALHOST, 0)
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"data", transport.get_extra_info("sockname"))
            await proto.received

        def close_elsewhere() -> None:
            where.set("elsewhere")
            transport.close()

        loop.call_soon(close_elsewhere)
        await proto.lost
        return proto.seen

    seen = run_within(loop, main())
    assert seen == {name: "creator"
                    for name in ["connection_made", "datagram_received", "connection_lost"]}


def test_a_datagram_endpoint_over_a_socketpair_sends_without_an_address(loop: Loop) -> None:
    async def main(mine: socket.socket, theirs: socket.socket) -> tuple[Any, bytes]:
        transport, proto = await loop.create_datagram_endpoint(DatagramRecorder, sock=mine)
        theirs.send(b"hello")
        _, addr = await proto.received
        transport.sendto(b"from the loop")
        reply = await loop.run_in_executor(None, theirs.recv, 100)
        transport.close()
        await proto.lost
        return addr, reply

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with mine, theirs:
        addr, reply = run_within(loop, main(mine, theirs))
    assert addr is None  # an unnamed unix socket (Linux)
    assert reply == b"from the loop"


@pytest.mark.parametrize("cleanup", [True, False])
def test_create_unix_server_cleanup_socket_says_whether_close_removes_the_file(
    loop: Loop, cleanup: bool
) -> None:
    async def main(path: str) -> None:
        server = await loop.create_unix_server(asyncio.Protocol, path, cleanup_socket=cleanup)
        assert os.path.exists(path)
        server.close()
        await server.wait_closed()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sock")
        run_within(loop, main(path))
        assert os.path.exists(path) is not cleanup


def test_subprocess_protocol_callbacks_run_in_the_context_of_subprocess_exec(
    loop: Loop,
) -> None:
    class Recorder(asyncio.SubprocessProtocol):
        def __init__(self) -> None:
            self.seen: dict[str, str] = {}
            self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def connection_made(self, transport: Any) -> None:
            self.seen["connection_made"] = where.get()

        def pipe_data_received(self, fd: int, data: bytes) -> None:
            self.seen["pipe_data_received"] = where.get()

        def process_exited(self) -> None:
            self.seen["process_exited"] = where.get()

        def connection_lost(self, exc: Optional[BaseException]) -> None:
            self.seen["connection_lost"] = where.get()
            self.lost.set_result(None)

    async def main() -> dict[str, str]:
        where.set("creator")
        transport, proto = await loop.subprocess_exec(
            Recorder, sys.executable, "-c", "print('hi')", stdin=None
        )
        await proto.lost
        transport.close()
        return proto.seen

    seen = run_within(loop, main())
    assert seen == {name: "creator" for name in
                    ["connection_made", "pipe_data_received", "process_exited", "connection_lost"]}
