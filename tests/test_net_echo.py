"""Bytes going out and coming back through every networking API asyncio offers, on the native
loop: raw ``sock_*`` calls, streams, protocols, buffered protocols, servers, UDP, unix sockets,
and the ``add_reader``/``add_writer`` watchers they all stand on. Real sockets on 127.0.0.1,
::1 and unix paths; nothing mocked."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import struct
import sys
import tempfile
import uuid
from typing import Any, Awaitable, Iterator, Optional, TypeVar

import pytest
from integration_helpers import free_port
from monitored_ioloop.loop import Loop

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")

LOCALHOST = "127.0.0.1"
MiB = 1024 * 1024


def run_within(loop: Loop, awaitable: Awaitable[T], timeout: float = 20.0) -> T:
    """Runs ``awaitable`` on ``loop``, failing (not hanging) if it takes longer than ``timeout``."""
    return loop.run_until_complete(asyncio.wait_for(awaitable, timeout))


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


# -- protocols ----------------------------------------------------------------------------------


class EchoProto(asyncio.Protocol):
    """Sends back whatever it receives."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Collector(asyncio.Protocol):
    """Keeps what it receives; ``done`` resolves with all of it once ``expected`` bytes came (or
    at EOF); ``lost`` resolves with connection_lost's argument."""

    def __init__(self, expected: Optional[int] = None) -> None:
        loop = asyncio.get_running_loop()
        self.expected = expected
        self.chunks: list[bytes] = []
        self.received = 0
        self.made: asyncio.Future[asyncio.Transport] = loop.create_future()
        self.done: asyncio.Future[bytes] = loop.create_future()
        self.lost: asyncio.Future[Optional[Exception]] = loop.create_future()
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.received += len(data)
        if self.expected is not None and self.received >= self.expected:
            self._finish()

    def eof_received(self) -> Optional[bool]:
        self.eof = True
        self._finish()
        return None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._finish()
        if not self.lost.done():
            self.lost.set_result(exc)

    def data(self) -> bytes:
        return b"".join(self.chunks)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(self.data())


async def start_echo_server(**kwargs: Any) -> tuple[asyncio.Server, int]:
    loop = asyncio.get_running_loop()
    kwargs.setdefault("host", LOCALHOST)
    server = await loop.create_server(EchoProto, port=0, **kwargs)
    return server, int(server.sockets[0].getsockname()[1])


async def echo_once_via_streams(host: str, port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        return await reader.readexactly(len(payload))
    finally:
        writer.close()
        await writer.wait_closed()


# -- raw sock_* calls ---------------------------------------------------------------------------


def test_sock_calls_echo_round_trip(loop: Loop) -> None:
    payload = b"ping-" * 2000

    async def main() -> tuple[bytes, Any, Any]:
        with socket.socket() as listener, socket.socket() as client:
            listener.bind((LOCALHOST, 0))
            listener.listen()
            listener.setblocking(False)
            client.setblocking(False)
            accepting = asyncio.ensure_future(loop.sock_accept(listener))
            await loop.sock_connect(client, listener.getsockname())
            served, peer = await accepting
            with served:
                await loop.sock_sendall(client, payload)
                got = b""
                while len(got) < len(payload):
                    chunk = await loop.sock_recv(served, 65536)
                    if not chunk:
                        break
                    got += chunk
                await loop.sock_sendall(served, got)
                back = bytearray(len(payload))
                view = memoryview(back)
                filled = 0
                while filled < len(payload):
                    n = await loop.sock_recv_into(client, view[filled:])
                    if n == 0:
                        break
                    filled += n
                return bytes(back[:filled]), peer, client.getsockname()

    back, peer, client_name = run_within(loop, main())
    assert back == payload
    assert peer == client_name


def test_sock_sendall_of_8_mib_completes_while_the_peer_reads(loop: Loop) -> None:
    payload = os.urandom(8 * MiB)

    async def main() -> bytes:
        left, right = socket.socketpair()
        with left, right:
            left.setblocking(False)
            right.setblocking(False)

            async def read_all() -> bytes:
                chunks = []
                received = 0
                while received < len(payload):
                    chunk = await loop.sock_recv(right, 1 << 20)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    received += len(chunk)
                return b"".join(chunks)

            reading = asyncio.ensure_future(read_all())
            await loop.sock_sendall(left, payload)
            return await reading

    assert run_within(loop, main()) == payload


def test_sock_sendto_and_sock_recvfrom_round_trip(loop: Loop) -> None:
    async def main() -> tuple[bytes, Any, Any]:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            a.bind((LOCALHOST, 0))
            b.bind((LOCALHOST, 0))
            a.setblocking(False)
            b.setblocking(False)
            receiving = asyncio.ensure_future(loop.sock_recvfrom(b, 1024))
            await asyncio.sleep(0)
            await loop.sock_sendto(a, b"datagram", b.getsockname())
            data, sender = await receiving
            return data, sender, a.getsockname()

    data, sender, a_name = run_within(loop, main())
    assert data == b"datagram"
    assert sender == a_name


def test_a_cancelled_sock_recv_unregisters_and_a_later_one_gets_the_data(loop: Loop) -> None:
    async def main() -> tuple[bool, bytes]:
        left, right = socket.socketpair()
        with left, right:
            left.setblocking(False)
            right.setblocking(False)
            pending = asyncio.ensure_future(loop.sock_recv(right, 100))
            await asyncio.sleep(0.01)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            still_registered = loop.remove_reader(right)
            left.send(b"after cancel")
            return still_registered, await loop.sock_recv(right, 100)

    still_registered, data = run_within(loop, main())
    assert still_registered is False
    assert data == b"after cancel"


# -- streams, protocols, buffered protocols -----------------------------------------------------


def test_streams_echo_round_trip(loop: Loop) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()

    async def main() -> bytes:
        server = await asyncio.start_server(handle, LOCALHOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(LOCALHOST, port)
            writer.write(b"hello streams\n")
            reply = await reader.readline()
            at_eof = await reader.read()
            writer.close()
            await writer.wait_closed()
            return reply + at_eof

    assert run_within(loop, main()) == b"HELLO STREAMS\n"


def test_protocol_echo_round_trip(loop: Loop) -> None:
    payload = b"hello protocol"

    async def main() -> bytes:
        server, port = await start_echo_server()
        async with server:
            _, client = await loop.create_connection(
                lambda: Collector(len(payload)), LOCALHOST, port
            )
            client.transport.write(payload)
            data = await client.done
            client.transport.close()
            await client.lost
            return data

    assert run_within(loop, main()) == payload


class Recorder(asyncio.Protocol):
    """Keeps what it receives, and hands the transport to `then` after its first read."""

    def __init__(self, then: Optional[asyncio.Protocol] = None) -> None:
        self.received: list[bytes] = []
        self.then = then
        self.got: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        if self.then is not None:
            self.transport.set_protocol(self.then)
        if not self.got.done():
            self.got.set_result(None)


def test_reads_go_to_the_protocol_set_last(loop: Loop) -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        ours, peer = socket.socketpair()
        with peer:
            second = Recorder()
            first = Recorder(then=second)
            transport, _ = await loop.connect_accepted_socket(lambda: first, ours)
            peer.send(b"one")
            await first.got
            peer.send(b"two")
            await second.got
            transport.close()
            return first.received, second.received

    assert run_within(loop, main()) == ([b"one"], [b"two"])


class NoDataReceived:
    """A protocol that forgot `data_received`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost = exc


def test_a_protocol_without_data_received_gets_the_fatal_error_asyncio_gives(
    loop: Loop,
) -> None:
    contexts: list[dict[str, Any]] = []

    async def main() -> NoDataReceived:
        loop.set_exception_handler(lambda _, context: contexts.append(context))
        ours, peer = socket.socketpair()
        with peer:
            protocol = NoDataReceived()
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, ours)  # type: ignore[type-var]
            peer.send(b"data")
            for _ in range(200):
                if transport.is_closing():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)
            return protocol

    protocol = run_within(loop, main())
    assert [c["message"] for c in contexts] == [
        "Fatal error: protocol.data_received() call failed."
    ]
    assert isinstance(contexts[0]["exception"], AttributeError)
    assert isinstance(protocol.lost, AttributeError)


class SmallBufferProto(asyncio.BufferedProtocol):
    """Hands the transport a 16-byte buffer and keeps every byte it fills in."""

    BUFFER_SIZE = 16

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.buffer = bytearray(self.BUFFER_SIZE)
        self.received = bytearray()
        self.fill_sizes: list[int] = []
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.fill_sizes.append(nbytes)
        self.received += self.buffer[:nbytes]
        if len(self.received) >= self.expected and not self.done.done():
            self.done.set_result(bytes(self.received))

    def eof_received(self) -> Optional[bool]:
        if not self.done.done():
            self.done.set_result(bytes(self.received))
        return None


def test_buffered_protocol_with_a_16_byte_buffer_receives_everything_in_order(
    loop: Loop,
) -> None:
    payload = bytes(range(256)) * 40

    async def main() -> SmallBufferProto:
        server, port = await start_echo_server()
        async with server:
            _, client = await loop.create_connection(
                lambda: SmallBufferProto(len(payload)), LOCALHOST, port
            )
            client.transport.write(payload)
            await client.done
            client.transport.close()
            return client

    client = run_within(loop, main())
    assert bytes(client.received) == payload
    assert max(client.fill_sizes) <= SmallBufferProto.BUFFER_SIZE
    assert len(client.fill_sizes) >= len(payload) // SmallBufferProto.BUFFER_SIZE


def test_streams_carry_16_mib_intact(loop: Loop) -> None:
    payload = os.urandom(16 * MiB)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(len(payload))
        writer.write(data)
        await writer.drain()
        writer.close()

    async def main() -> bytes:
        server = await asyncio.start_server(handle, LOCALHOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(LOCALHOST, port)
            writer.write(payload)
            await writer.drain()
            back = await reader.readexactly(len(payload))
            writer.close()
            await writer.wait_closed()
            return back

    assert run_within(loop, main(), timeout=40) == payload


def test_protocol_carries_16_mib_intact(loop: Loop) -> None:
    payload = os.urandom(16 * MiB)

    async def main() -> bytes:
        server, port = await start_echo_server()
        async with server:
            _, client = await loop.create_connection(
                lambda: Collector(len(payload)), LOCALHOST, port
            )
            client.transport.write(payload)
            data = await client.done
            client.transport.close()
            return data

    assert run_within(loop, main(), timeout=40) == payload


def test_ten_thousand_small_writes_arrive_complete_and_in_order(loop: Loop) -> None:
    messages = [b"%09d\n" % i for i in range(10_000)]
    expected = b"".join(messages)
    assert all(len(m) == 10 for m in messages)

    async def main() -> bytes:
        server, port = await start_echo_server()
        async with server:
            _, client = await loop.create_connection(
                lambda: Collector(len(expected)), LOCALHOST, port
            )
            for i, message in enumerate(messages):
                client.transport.write(message)
                if i % 100 == 99:
                    await asyncio.sleep(0)
            data = await client.done
            client.transport.close()
            return data

    assert run_within(loop, main()) == expected


def test_writelines_sends_every_buffer_in_order(loop: Loop) -> None:
    parts: list[Any] = [b"alpha,", bytearray(b"beta,"), memoryview(b"gamma,"), b"x" * 100_000]
    expected = b"".join(bytes(p) for p in parts)

    async def main() -> bytes:
        server, port = await start_echo_server()
        async with server:
            _, client = await loop.create_connection(
                lambda: Collector(len(expected)), LOCALHOST, port
            )
            client.transport.writelines(parts)
            data = await client.done
            client.transport.close()
            return data

    assert run_within(loop, main()) == expected


# -- half-close, abort, reset -------------------------------------------------------------------


class ReplyAtEof(asyncio.Protocol):
    """Counts what it receives; at EOF replies with the count, then closes."""

    def __init__(self) -> None:
        self.received = 0
        self.eof_seen = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def eof_received(self) -> bool:
        self.eof_seen = True
        self.transport.write(b"got %d bytes" % self.received)
        self.transport.close()
        return True


def test_write_eof_half_closes_and_the_server_still_replies(loop: Loop) -> None:
    servers: list[ReplyAtEof] = []

    def factory() -> ReplyAtEof:
        servers.append(ReplyAtEof())
        return servers[-1]

    async def main() -> tuple[bool, bytes, bool]:
        server = await loop.create_server(factory, LOCALHOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            _, client = await loop.create_connection(Collector, LOCALHOST, port)
            can_write_eof = client.transport.can_write_eof()
            client.transport.write(b"z" * 5000)
            client.transport.write_eof()
            reply = await client.done
            await client.lost
            return can_write_eof, reply, client.eof

    can_write_eof, reply, client_saw_eof = run_within(loop, main())
    assert can_write_eof
    assert reply == b"got 5000 bytes"
    assert client_saw_eof
    assert len(servers) == 1 and servers[0].eof_seen


def test_abort_closes_at_once_and_the_peer_sees_eof_or_reset(loop: Loop) -> None:
    peers: list[Collector] = []

    def factory() -> Collector:
        peers.append(Collector())
        return peers[-1]

    async def main() -> tuple[bool, Optional[Exception], Optional[Exception]]:
        server = await loop.create_server(factory, LOCALHOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            _, client = await loop.create_connection(Collector, LOCALHOST, port)
            while not peers:
                await asyncio.sleep(0.001)
            await peers[0].made
            client.transport.write(b"a" * 100_000)
            client.transport.abort()
            closing = client.transport.is_closing()
            client_exc = await client.lost
            peer_exc = await peers[0].lost
            return closing, client_exc, peer_exc

    closing, client_exc, peer_exc = run_within(loop, main())
    assert closing
    assert client_exc is None
    assert peer_exc is None or isinstance(peer_exc, ConnectionResetError)


def test_peer_reset_reports_connection_lost_with_an_exception(loop: Loop) -> None:
    peers: list[Collector] = []

    def factory() -> Collector:
        peers.append(Collector())
        return peers[-1]

    async def main() -> Optional[Exception]:
        server = await loop.create_server(factory, LOCALHOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            raw = socket.socket()
            raw.setblocking(False)
            await loop.sock_connect(raw, (LOCALHOST, port))
            while not peers:
                await asyncio.sleep(0.001)
            await peers[0].made
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
            return await peers[0].lost

    exc = run_within(loop, main())
    assert isinstance(exc, ConnectionResetError)


def test_a_writer_stuck_on_a_peer_that_resets_gets_connection_lost_with_the_reset(
    loop: Loop,
) -> None:
    async def main() -> tuple[int, Optional[Exception]]:
        with socket.socket() as listener:
            listener.bind((LOCALHOST, 0))
            listener.listen()
            listener.setblocking(False)
            accepting = asyncio.ensure_future(loop.sock_accept(listener))
            _, client = await loop.create_connection(Collector, *listener.getsockname())
            accepted, _ = await accepting
            # The peer never reads: most of the payload stays in the client's buffer.
            client.transport.write(b"w" * (8 * MiB))
            await asyncio.sleep(0.05)
            buffered = client.transport.get_write_buffer_size()
            accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            accepted.close()
            return buffered, await asyncio.wait_for(client.lost, 5)

    buffered, exc = run_within(loop, main())
    assert buffered > 0
    assert isinstance(exc, ConnectionResetError)


# -- flow control -------------------------------------------------------------------------------


class PausedAtStart(Collector):
    """A server protocol that stops reading as soon as it is connected."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.pause_reading()


class FlowWatcher(Collector):
    """A client protocol that records pause_writing/resume_writing."""

    def __init__(self) -> None:
        super().__init__()
        loop = asyncio.get_running_loop()
        self.paused: asyncio.Future[None] = loop.create_future()
        self.resumed: asyncio.Future[None] = loop.create_future()
        self.flow_events: list[str] = []

    def pause_writing(self) -> None:
        self.flow_events.append("pause")
        if not self.paused.done():
            self.paused.set_result(None)

    def resume_writing(self) -> None:
        self.flow_events.append("resume")
        if not self.resumed.done():
            self.resumed.set_result(None)


async def connect_to_paused_server(
    loop: Loop,
) -> tuple[asyncio.Server, list[PausedAtStart], FlowWatcher]:
    peers: list[PausedAtStart] = []

    def factory() -> PausedAtStart:
        peers.append(PausedAtStart())
        return peers[-1]

    server = await loop.create_server(factory, LOCALHOST, 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(FlowWatcher, LOCALHOST, port)
    while not peers:
        await asyncio.sleep(0.001)
    await peers[0].made
    return server, peers, client


def test_writing_to_a_paused_reader_pauses_the_writer_until_it_resumes(loop: Loop) -> None:
    total = 8 * MiB
    payload = os.urandom(total)

    async def main() -> None:
        server, peers, client = await connect_to_paused_server(loop)
        async with server:
            peer = peers[0]
            peer.expected = total
            client.transport.write(payload)
            await asyncio.wait_for(client.paused, 5)
            await asyncio.sleep(0.2)
            # The server really stopped reading: nothing came in, the client still holds data.
            assert peer.received == 0
            assert client.transport.get_write_buffer_size() > 0
            assert not client.resumed.done()
            peer.transport.resume_reading()
            await asyncio.wait_for(client.resumed, 10)
            assert await asyncio.wait_for(peer.done, 10) == payload
            assert client.flow_events[:2] == ["pause", "resume"]
            client.transport.close()

    run_within(loop, main())


def test_write_buffer_size_counts_unsent_bytes_and_drains_to_zero(loop: Loop) -> None:
    total = 8 * MiB

    async def main() -> None:
        server, peers, client = await connect_to_paused_server(loop)
        async with server:
            peer = peers[0]
            peer.expected = total
            assert client.transport.get_write_buffer_size() == 0
            client.transport.write(b"q" * total)
            pending = client.transport.get_write_buffer_size()
            assert 0 < pending <= total
            peer.transport.resume_reading()
            await asyncio.wait_for(peer.done, 10)
            assert client.transport.get_write_buffer_size() == 0
            client.transport.close()

    run_within(loop, main())


def test_set_write_buffer_limits_is_read_back_by_get_write_buffer_limits(loop: Loop) -> None:
    async def main() -> tuple[int, int]:
        server, port = await start_echo_server()
        async with server:
            _, client = await loop.create_connection(Collector, LOCALHOST, port)
            client.transport.set_write_buffer_limits(high=4000, low=1000)
            limits = client.transport.get_write_buffer_limits()
            client.transport.close()
            return limits

    assert run_within(loop, main()) == (1000, 4000)


def test_lowering_the_high_water_mark_below_the_buffer_pauses_the_writer(loop: Loop) -> None:
    async def main() -> tuple[list[str], list[str], int]:
        server, peers, client = await connect_to_paused_server(loop)
        async with server:
            client.transport.set_write_buffer_limits(high=64 * MiB)
            client.transport.write(b"f" * (8 * MiB))
            await asyncio.sleep(0.05)
            before = list(client.flow_events)
            client.transport.set_write_buffer_limits(high=1024)
            after = list(client.flow_events)
            peers[0].transport.resume_reading()
            await asyncio.wait_for(client.resumed, 10)
            size = client.transport.get_write_buffer_size()
            client.transport.close()
            return before, after, size

    before, after, size_after_resume = run_within(loop, main())
    assert before == []
    assert after == ["pause"]
    assert size_after_resume <= 256


# -- transport details --------------------------------------------------------------------------


def test_get_extra_info_gives_socket_sockname_and_peername(loop: Loop) -> None:
    peers: list[Collector] = []

    def factory() -> Collector:
        peers.append(Collector())
        return peers[-1]

    async def main() -> None:
        server = await loop.create_server(factory, LOCALHOST, 0)
        async with server:
            server_addr = server.sockets[0].getsockname()
            _, client = await loop.create_connection(Collector, *server_addr)
            while not peers:
                await asyncio.sleep(0.001)
            peer_transport = await peers[0].made
            sock = client.transport.get_extra_info("socket")
            assert sock.fileno() >= 0
            assert sock.family == socket.AF_INET
            assert client.transport.get_extra_info("sockname") == sock.getsockname()
            assert client.transport.get_extra_info("peername") == server_addr
            assert peer_transport.get_extra_info("peername") == sock.getsockname()
            assert peer_transport.get_extra_info("sockname") == server_addr
            assert client.transport.get_extra_info("no-such-key", "default") == "default"
            client.transport.close()

    run_within(loop, main())


def test_tcp_nodelay_is_on_for_client_and_server_transports(loop: Loop) -> None:
    peers: list[Collector] = []

    def factory() -> Collector:
        peers.append(Collector())
        return peers[-1]

    async def main() -> tuple[int, int]:
        server = await loop.create_server(factory, LOCALHOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            _, client = await loop.create_connection(Collector, LOCALHOST, port)
            while not peers:
                await asyncio.sleep(0.001)
            peer_transport = await peers[0].made
            client_sock = client.transport.get_extra_info("socket")
            server_sock = peer_transport.get_extra_info("socket")
            flags = (
                client_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                server_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            )
            client.transport.close()
            return flags

    client_nodelay, server_nodelay = run_within(loop, main())
    assert client_nodelay != 0
    assert server_nodelay != 0


def test_transport_repr_shows_what_the_native_watchers_poll(loop: Loop) -> None:
    async def main() -> list[str]:
        server, peers, client = await connect_to_paused_server(loop)
        async with server:
            transport = client.transport
            seen = [repr(transport)]
            transport.pause_reading()
            seen.append(repr(transport))
            transport.write(b"r" * (8 * MiB))
            seen.append(repr(transport))
            transport.abort()
            # The paused peer never reads the reset; close it so the server (which waits for
            # its connections on 3.12+) can close.
            peers[0].transport.abort()
            return seen

    reading, paused, writing = run_within(loop, main())
    assert "read=polling" in reading and "write=<idle, bufsize=0>" in reading
    assert "read=idle" in paused
    assert "write=<polling, bufsize=" in writing


# -- many connections ---------------------------------------------------------------------------


@pytest.fixture
def fd_headroom() -> Iterator[None]:
    """At least 4096 descriptors for the test (the soft limit raised if it has to be)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_concurrent_connections_each_echo_once(loop: Loop, fd_headroom: None) -> None:
    count = 1000

    async def main() -> list[bytes]:
        server, port = await start_echo_server(backlog=count)
        async with server:
            return await asyncio.gather(
                *(echo_once_via_streams(LOCALHOST, port, b"conn %04d\n" % i) for i in range(count))
            )

    replies = run_within(loop, main(), timeout=45)
    assert replies == [b"conn %04d\n" % i for i in range(count)]


# -- servers ------------------------------------------------------------------------------------


def test_server_on_port_zero_listens_on_a_real_port(loop: Loop) -> None:
    async def main() -> tuple[int, bytes]:
        server, port = await start_echo_server()
        async with server:
            return port, await echo_once_via_streams(LOCALHOST, port, b"zero")

    port, reply = run_within(loop, main())
    assert port > 0
    assert reply == b"zero"


@needs_ipv6
def test_server_on_several_hosts_listens_and_echoes_on_each(loop: Loop) -> None:
    async def main() -> list[tuple[int, bytes]]:
        server = await loop.create_server(EchoProto, host=[LOCALHOST, "::1"], port=0)
        async with server:
            results: list[tuple[int, bytes]] = []
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                results.append((sock.family, await echo_once_via_streams(host, port, b"multi")))
            return results

    results = run_within(loop, main())
    assert sorted(family for family, _ in results) == sorted([socket.AF_INET, socket.AF_INET6])
    assert all(reply == b"multi" for _, reply in results)


def test_create_server_with_sock_serves_on_that_socket(loop: Loop) -> None:
    async def main() -> tuple[bytes, int, int]:
        listener = socket.socket()
        listener.bind((LOCALHOST, 0))
        port = listener.getsockname()[1]
        server = await loop.create_server(EchoProto, sock=listener)
        async with server:
            reply = await echo_once_via_streams(LOCALHOST, port, b"given sock")
            return reply, server.sockets[0].fileno(), listener.fileno()

    reply, served_fd, listener_fd = run_within(loop, main())
    assert reply == b"given sock"
    assert served_fd == listener_fd


def test_server_close_stops_accepting_and_wait_closed_returns(loop: Loop) -> None:
    async def main() -> tuple[bool, bool]:
        server, port = await start_echo_server()
        serving_before = server.is_serving()
        server.close()
        await server.wait_closed()
        serving_after = server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(LOCALHOST, port)
        return serving_before, serving_after

    assert run_within(loop, main()) == (True, False)


def test_serve_forever_ends_with_cancelled_error_and_closes_the_server(loop: Loop) -> None:
    async def main() -> None:
        server, port = await start_echo_server(start_serving=False)
        serving = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.05)
        assert server.is_serving()
        assert await echo_once_via_streams(LOCALHOST, port, b"forever") == b"forever"
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert not server.is_serving()
        await server.wait_closed()

    run_within(loop, main())


def test_start_serving_false_accepts_only_after_start_serving(loop: Loop) -> None:
    async def main() -> None:
        server, port = await start_echo_server(start_serving=False)
        async with server:
            assert not server.is_serving()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(LOCALHOST, port)
            await server.start_serving()
            assert server.is_serving()
            assert await echo_once_via_streams(LOCALHOST, port, b"late") == b"late"

    run_within(loop, main())


def test_server_get_loop_and_sockets_describe_the_server(loop: Loop) -> None:
    async def main() -> None:
        server, port = await start_echo_server()
        async with server:
            assert server.get_loop() is loop
            assert len(server.sockets) == 1
            assert server.sockets[0].getsockname() == (LOCALHOST, port)
            assert server.sockets[0].type == socket.SOCK_STREAM

    run_within(loop, main())


def test_async_with_server_closes_it_on_exit(loop: Loop) -> None:
    async def main() -> tuple[bool, bool]:
        server, _ = await start_echo_server()
        async with server as entered:
            inside = entered is server and server.is_serving()
        return inside, server.is_serving()

    assert run_within(loop, main()) == (True, False)


# -- connecting in other ways -------------------------------------------------------------------


def test_connect_accepted_socket_wraps_an_accepted_socket(loop: Loop) -> None:
    payload = b"accepted"

    async def main() -> bytes:
        with socket.socket() as listener:
            listener.bind((LOCALHOST, 0))
            listener.listen()
            listener.setblocking(False)
            accepting = asyncio.ensure_future(loop.sock_accept(listener))
            _, client = await loop.create_connection(
                lambda: Collector(len(payload)), *listener.getsockname()
            )
            accepted, _ = await accepting
            transport, _ = await loop.connect_accepted_socket(EchoProto, accepted)
            client.transport.write(payload)
            data = await client.done
            client.transport.close()
            transport.close()
            return data

    assert run_within(loop, main()) == payload


def test_create_connection_with_sock_uses_that_socket(loop: Loop) -> None:
    async def main() -> tuple[bytes, int, int]:
        server, port = await start_echo_server()
        async with server:
            sock = socket.socket()
            sock.connect((LOCALHOST, port))
            fd = sock.fileno()
            _, client = await loop.create_connection(lambda: Collector(4), sock=sock)
            client.transport.write(b"sock")
            data = await client.done
            used_fd = client.transport.get_extra_info("socket").fileno()
            client.transport.close()
            return data, fd, used_fd

    data, fd, used_fd = run_within(loop, main())
    assert data == b"sock"
    assert used_fd == fd


def test_create_connection_binds_to_local_addr(loop: Loop) -> None:
    peers: list[Collector] = []

    def factory() -> Collector:
        peers.append(Collector())
        return peers[-1]

    async def main() -> tuple[Any, Any]:
        server = await loop.create_server(factory, LOCALHOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            local = (LOCALHOST, free_port())
            _, client = await loop.create_connection(Collector, LOCALHOST, port, local_addr=local)
            while not peers:
                await asyncio.sleep(0.001)
            peer_transport = await peers[0].made
            seen = peer_transport.get_extra_info("peername")
            client.transport.close()
            return local, seen

    local, seen_by_server = run_within(loop, main())
    assert seen_by_server == local


def test_create_connection_with_happy_eyeballs_delay_connects(loop: Loop) -> None:
    async def main() -> bytes:
        server, port = await start_echo_server()
        async with server:
            _, client = await loop.create_connection(
                lambda: Collector(5),
                "localhost",
                port,
                family=socket.AF_INET,
                happy_eyeballs_delay=0.05,
                interleave=1,
            )
            client.transport.write(b"happy")
            data = await client.done
            client.transport.close()
            return data

    assert run_within(loop, main()) == b"happy"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="all_errors is new in Python 3.12")
def test_create_connection_all_errors_raises_an_exception_group(loop: Loop) -> None:
    port = free_port()
    new_in_312: dict[str, Any] = {"all_errors": True}

    async def main() -> None:
        with pytest.RaisesGroup(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, LOCALHOST, port, **new_in_312)

    run_within(loop, main())


# -- UDP ----------------------------------------------------------------------------------------


class DatagramEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport.
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data.upper(), addr)


class DatagramCollector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))


def test_udp_datagrams_echo_round_trip(loop: Loop) -> None:
    sent = [b"datagram %d" % i for i in range(5)]

    async def main() -> tuple[list[tuple[bytes, Any]], Any]:
        server_transport, _ = await loop.create_datagram_endpoint(
            DatagramEcho, local_addr=(LOCALHOST, 0)
        )
        server_addr = server_transport.get_extra_info("sockname")
        client_transport, client = await loop.create_datagram_endpoint(
            DatagramCollector, remote_addr=server_addr
        )
        try:
            received = []
            for datagram in sent:
                client_transport.sendto(datagram)
                received.append(await asyncio.wait_for(client.queue.get(), 5))
            return received, server_addr
        finally:
            client_transport.close()
            server_transport.close()

    received, server_addr = run_within(loop, main())
    assert [data for data, _ in received] == [d.upper() for d in sent]
    assert all(addr == server_addr for _, addr in received)


# -- unix sockets -------------------------------------------------------------------------------


@pytest.fixture
def unix_path() -> Iterator[str]:
    # A short directory: unix socket paths are limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="mio-", dir="/tmp") as directory:
        yield os.path.join(directory, "echo.sock")


async def unix_echo_once(loop: Loop, path: str, payload: bytes) -> bytes:
    _, client = await loop.create_unix_connection(lambda: Collector(len(payload)), path)
    client.transport.write(payload)
    data = await client.done
    client.transport.close()
    return data


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets")
def test_unix_server_and_connection_echo_over_a_path(loop: Loop, unix_path: str) -> None:
    async def main() -> bytes:
        server = await loop.create_unix_server(EchoProto, unix_path)
        async with server:
            return await unix_echo_once(loop, unix_path, b"over a path")

    assert run_within(loop, main()) == b"over a path"


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets")
def test_unix_server_replaces_a_stale_socket_file(loop: Loop, unix_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(unix_path)
    stale.close()
    assert os.path.exists(unix_path)

    async def main() -> bytes:
        server = await loop.create_unix_server(EchoProto, unix_path)
        async with server:
            return await unix_echo_once(loop, unix_path, b"fresh")

    assert run_within(loop, main()) == b"fresh"


@linux_only
def test_unix_server_and_connection_echo_over_an_abstract_name(loop: Loop) -> None:
    name = f"\0monitored-ioloop-test-{os.getpid()}-{uuid.uuid4().hex}"

    async def main() -> tuple[bytes, Any]:
        server = await loop.create_unix_server(EchoProto, name)
        async with server:
            bound = server.sockets[0].getsockname()
            return await unix_echo_once(loop, name, b"abstract"), bound

    reply, bound = run_within(loop, main())
    assert reply == b"abstract"
    assert bound in (name, name.encode())


# -- add_reader / add_writer --------------------------------------------------------------------


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_add_reader_callback_gets_its_args(
    loop: Loop, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    reader, writer = socket_pair
    calls: list[tuple[Any, ...]] = []

    async def main() -> None:
        fired = loop.create_future()

        def on_readable(*args: Any) -> None:
            calls.append(args)
            loop.remove_reader(reader)
            fired.set_result(None)

        loop.add_reader(reader.fileno(), on_readable, 1, "two", None)
        writer.send(b"x")
        await fired

    run_within(loop, main(), timeout=5)
    assert calls == [(1, "two", None)]


def test_second_add_reader_replaces_the_first_and_cancels_its_handle(
    loop: Loop, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    reader, writer = socket_pair
    called: list[str] = []

    async def main() -> bool:
        fired = loop.create_future()

        def first() -> None:
            called.append("first")

        def second() -> None:
            called.append("second")
            loop.remove_reader(reader)
            fired.set_result(None)

        loop.add_reader(reader, first)
        assert loop._selector is not None
        first_handle = loop._selector.get_key(reader).data[0]
        loop.add_reader(reader, second)
        writer.send(b"x")
        await fired
        await asyncio.sleep(0.01)
        return bool(first_handle.cancelled())

    first_cancelled = run_within(loop, main(), timeout=5)
    assert first_cancelled
    assert called == ["second"]


def test_remove_reader_returns_true_then_false(
    loop: Loop, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    reader, _ = socket_pair
    loop.add_reader(reader, lambda: None)
    assert loop.remove_reader(reader) is True
    assert loop.remove_reader(reader) is False


def test_remove_writer_returns_true_then_false(
    loop: Loop, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    _, writer = socket_pair
    loop.add_writer(writer, lambda: None)
    assert loop.remove_writer(writer) is True
    assert loop.remove_writer(writer) is False


def test_add_writer_fires_for_a_writable_socket_with_its_args(
    loop: Loop, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    _, writer = socket_pair
    calls: list[tuple[Any, ...]] = []

    async def main() -> None:
        fired = loop.create_future()

        def on_writable(*args: Any) -> None:
            calls.append(args)
            loop.remove_writer(writer)
            fired.set_result(None)

        loop.add_writer(writer.fileno(), on_writable, "w")
        await fired

    run_within(loop, main(), timeout=5)
    assert calls == [("w",)]


class HasFileno:
    """Not a socket: only a ``fileno()`` method, which selectors accept."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


def test_add_reader_accepts_an_object_with_fileno(
    loop: Loop, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    reader, writer = socket_pair
    wrapped = HasFileno(reader.fileno())
    received: list[bytes] = []

    async def main() -> bool:
        fired = loop.create_future()

        def on_readable() -> None:
            received.append(reader.recv(16))
            fired.set_result(None)

        loop.add_reader(wrapped, on_readable)
        writer.send(b"fileno")
        await fired
        return loop.remove_reader(wrapped)

    removed = run_within(loop, main(), timeout=5)
    assert received == [b"fileno"]
    assert removed is True


def test_reader_and_writer_on_one_fd_fire_independently(
    loop: Loop, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    sock, peer = socket_pair
    events: list[str] = []

    async def main() -> None:
        wrote = loop.create_future()
        read = loop.create_future()

        def on_writable() -> None:
            events.append("write")
            loop.remove_writer(sock)
            wrote.set_result(None)

        def on_readable() -> None:
            events.append("read")
            sock.recv(16)
            loop.remove_reader(sock)
            read.set_result(None)

        loop.add_reader(sock, on_readable)
        loop.add_writer(sock, on_writable)
        await wrote
        assert events == ["write"]
        peer.send(b"r")
        await read

    run_within(loop, main(), timeout=5)
    assert events == ["write", "read"]


def test_watching_a_blocking_pipe_leaves_it_blocking(loop: Loop) -> None:
    read_fd, write_fd = os.pipe()
    try:
        assert os.get_blocking(read_fd)
        loop.add_reader(read_fd, lambda: None)
        while_watched = os.get_blocking(read_fd)
        loop.remove_reader(read_fd)
        assert while_watched
        assert os.get_blocking(read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)
