"""Networking gone wrong: refused connections, addresses that cannot resolve, writes after the
end, watchers on descriptors that are not there. Each gets the exception asyncio gives, never a
crash, and none leaves a descriptor behind.

Name resolution failures pass ``AI_NUMERICHOST`` so that no DNS query ever leaves the machine:
the failure then comes from getaddrinfo itself, through the same executor path."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
from typing import Any, Awaitable, Callable, Optional, TypeVar

import pytest
from monitored_ioloop.loop import Loop

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")

LOCALHOST = "127.0.0.1"


def run_within(loop: Loop, awaitable: Awaitable[T], timeout: float = 20.0) -> T:
    return loop.run_until_complete(asyncio.wait_for(awaitable, timeout))


def closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


def closed_fd() -> int:
    """A descriptor number that was valid a moment ago and is closed now."""
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to count descriptors"
)


class EchoProto(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Collector(asyncio.Protocol):
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.data = b""
        self.made: asyncio.Future[asyncio.Transport] = loop.create_future()
        self.lost: asyncio.Future[Optional[Exception]] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost.set_result(exc)


# -- nothing listening --------------------------------------------------------------------------


def test_create_connection_to_a_closed_port_raises_connection_refused(loop: Loop) -> None:
    port = closed_port()
    with pytest.raises(ConnectionRefusedError):
        run_within(loop, loop.create_connection(asyncio.Protocol, LOCALHOST, port))


def test_open_connection_to_a_closed_port_raises_connection_refused(loop: Loop) -> None:
    port = closed_port()
    with pytest.raises(ConnectionRefusedError):
        run_within(loop, asyncio.open_connection(LOCALHOST, port))


def test_sock_connect_to_a_closed_port_raises_connection_refused(loop: Loop) -> None:
    port = closed_port()
    with socket.socket() as sock:
        sock.setblocking(False)
        with pytest.raises(ConnectionRefusedError):
            run_within(loop, loop.sock_connect(sock, (LOCALHOST, port)))


# -- addresses that do not resolve ----------------------------------------------------------------


def test_create_connection_to_an_out_of_range_ipv4_address_raises_gaierror(loop: Loop) -> None:
    with pytest.raises(socket.gaierror):
        run_within(
            loop,
            loop.create_connection(asyncio.Protocol, "256.1.1.1", 80, flags=socket.AI_NUMERICHOST),
        )


def test_create_connection_to_a_name_that_is_not_an_ip_raises_gaierror(loop: Loop) -> None:
    with pytest.raises(socket.gaierror):
        run_within(
            loop,
            loop.create_connection(asyncio.Protocol, "not-an-ip", 80, flags=socket.AI_NUMERICHOST),
        )


def test_getaddrinfo_of_a_name_under_invalid_raises_gaierror(loop: Loop) -> None:
    with pytest.raises(socket.gaierror):
        run_within(loop, loop.getaddrinfo("no-such-host.invalid", 80, flags=socket.AI_NUMERICHOST))


def test_sock_connect_to_an_out_of_range_port_raises_overflow_error(loop: Loop) -> None:
    with socket.socket() as sock:
        sock.setblocking(False)
        with pytest.raises(OverflowError):
            run_within(loop, loop.sock_connect(sock, (LOCALHOST, 70000)))


def test_create_connection_with_an_unknown_family_raises_gaierror(loop: Loop) -> None:
    with pytest.raises(socket.gaierror) as caught:
        run_within(loop, loop.create_connection(asyncio.Protocol, LOCALHOST, 80, family=9999))
    assert caught.value.errno == socket.EAI_FAMILY


def test_create_server_with_an_unknown_family_raises_gaierror(loop: Loop) -> None:
    with pytest.raises(socket.gaierror) as caught:
        run_within(loop, loop.create_server(asyncio.Protocol, LOCALHOST, 0, family=9999))
    assert caught.value.errno == socket.EAI_FAMILY


# -- blocking sockets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda loop, sock: loop.sock_recv(sock, 10),
        lambda loop, sock: loop.sock_recv_into(sock, bytearray(10)),
        lambda loop, sock: loop.sock_sendall(sock, b"x"),
        lambda loop, sock: loop.sock_connect(sock, (LOCALHOST, 9)),
        lambda loop, sock: loop.sock_accept(sock),
    ],
    ids=["sock_recv", "sock_recv_into", "sock_sendall", "sock_connect", "sock_accept"],
)
def test_sock_calls_reject_a_blocking_socket_with_value_error(
    loop: Loop, call: Callable[[Loop, socket.socket], Awaitable[Any]]
) -> None:
    with socket.socket() as sock:
        assert sock.gettimeout() is None
        with pytest.raises(ValueError):
            run_within(loop, call(loop, sock))


# -- writing after the end ------------------------------------------------------------------------


def test_writes_to_a_closed_transport_are_dropped_silently(loop: Loop) -> None:
    peers: list[Collector] = []

    def factory() -> Collector:
        peers.append(Collector())
        return peers[-1]

    async def main() -> bytes:
        server = await loop.create_server(factory, LOCALHOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            _, client = await loop.create_connection(Collector, LOCALHOST, port)
            client.transport.write(b"before")
            client.transport.close()
            client.transport.write(b"after")
            client.transport.writelines([b"after", b"lines"])
            while not peers:
                await asyncio.sleep(0.001)
            await peers[0].lost
            return peers[0].data

    assert run_within(loop, main()) == b"before"


def test_write_after_write_eof_raises_runtime_error(loop: Loop) -> None:
    async def main() -> None:
        server = await loop.create_server(EchoProto, LOCALHOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            _, client = await loop.create_connection(Collector, LOCALHOST, port)
            client.transport.write_eof()
            try:
                with pytest.raises(RuntimeError):
                    client.transport.write(b"too late")
            finally:
                client.transport.close()

    run_within(loop, main())


# -- watchers on descriptors that are not there -------------------------------------------------


def test_add_reader_on_a_closed_fd_raises_os_error(loop: Loop) -> None:
    fd = closed_fd()
    with pytest.raises(OSError):
        loop.add_reader(fd, lambda: None)


def test_add_reader_on_a_closed_fd_reports_ebadf_in_errno(loop: Loop) -> None:
    fd = closed_fd()
    with pytest.raises(OSError) as caught:
        loop.add_reader(fd, lambda: None)
    assert caught.value.errno == errno.EBADF


def test_add_writer_on_a_closed_fd_raises_os_error(loop: Loop) -> None:
    fd = closed_fd()
    with pytest.raises(OSError):
        loop.add_writer(fd, lambda: None)


def test_a_failed_add_reader_leaves_nothing_registered_and_the_loop_working(
    loop: Loop,
) -> None:
    fd = closed_fd()
    with pytest.raises(OSError):
        loop.add_reader(fd, lambda: None)
    assert loop.remove_reader(fd) is False

    async def still_runs() -> str:
        await asyncio.sleep(0)
        return "ran"

    assert run_within(loop, still_runs()) == "ran"


def test_add_reader_on_a_regular_file_raises_permission_error(loop: Loop) -> None:
    # epoll refuses regular files (EPERM); asyncio's selector loop raises PermissionError.
    fd = os.open(__file__, os.O_RDONLY)
    try:
        with pytest.raises(PermissionError):
            loop.add_reader(fd, lambda: None)
        assert loop.remove_reader(fd) is False
    finally:
        os.close(fd)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_watching_fd_minus_one_raises_value_error(loop: Loop, method: str) -> None:
    with pytest.raises(ValueError):
        getattr(loop, method)(-1, lambda: None)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
def test_unwatching_fd_minus_one_raises_value_error(loop: Loop, method: str) -> None:
    with pytest.raises(ValueError):
        getattr(loop, method)(-1)


@pytest.mark.parametrize("not_a_file", ["abc", 1.5, None, object()], ids=repr)
def test_add_reader_with_an_object_that_is_no_file_raises_value_error(
    loop: Loop, not_a_file: Any
) -> None:
    with pytest.raises(ValueError):
        loop.add_reader(not_a_file, lambda: None)


def test_remove_reader_of_a_closed_fd_returns_false(loop: Loop) -> None:
    assert loop.remove_reader(closed_fd()) is False


# -- a peer that is not there (UDP) ----------------------------------------------------------------


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


class DatagramCollector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.errors: list[Exception] = []
        self.error_seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        if not self.error_seen.done():
            self.error_seen.set_result(None)


class DatagramEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


def test_a_udp_send_to_a_closed_port_reports_connection_refused_to_error_received(
    loop: Loop,
) -> None:
    port = closed_udp_port()

    async def main() -> list[Exception]:
        transport, client = await loop.create_datagram_endpoint(
            DatagramCollector, remote_addr=(LOCALHOST, port)
        )
        try:
            transport.sendto(b"anyone?")
            await asyncio.wait_for(client.error_seen, 5)
            return client.errors
        finally:
            transport.close()

    errors = run_within(loop, main())
    assert [type(e) for e in errors] == [ConnectionRefusedError]


def test_a_udp_endpoint_still_receives_after_its_peer_was_unreachable(loop: Loop) -> None:
    port = closed_udp_port()

    async def main() -> bytes:
        transport, client = await loop.create_datagram_endpoint(
            DatagramCollector, remote_addr=(LOCALHOST, port)
        )
        try:
            transport.sendto(b"anyone?")
            await asyncio.wait_for(client.error_seen, 5)
            echo_transport, _ = await loop.create_datagram_endpoint(
                DatagramEcho, local_addr=(LOCALHOST, port)
            )
            try:
                transport.sendto(b"now?")
                return await asyncio.wait_for(client.queue.get(), 2)
            finally:
                echo_transport.close()
        finally:
            transport.close()

    assert run_within(loop, main()) == b"now?"


def test_a_reader_keeps_firing_after_its_socket_reported_an_error(loop: Loop) -> None:
    port = closed_udp_port()
    seen: list[Any] = []

    async def main() -> None:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer,
        ):
            sock.setblocking(False)
            sock.connect((LOCALHOST, port))
            data_seen = loop.create_future()

            def on_readable() -> None:
                try:
                    seen.append(sock.recv(64))
                except ConnectionRefusedError as exc:
                    seen.append(type(exc))
                    return
                except BlockingIOError:
                    return
                if not data_seen.done():
                    data_seen.set_result(None)

            loop.add_reader(sock, on_readable)
            try:
                sock.send(b"anyone?")
                for _ in range(100):
                    if seen:
                        break
                    await asyncio.sleep(0.01)
                peer.bind((LOCALHOST, port))
                peer.sendto(b"late", sock.getsockname())
                await asyncio.wait_for(data_seen, 2)
            finally:
                loop.remove_reader(sock)

    run_within(loop, main())
    assert seen == [ConnectionRefusedError, b"late"]


# -- no descriptor left behind --------------------------------------------------------------------


def settle() -> None:
    gc.collect()
    gc.collect()


@needs_proc
def test_a_hundred_connect_echo_close_cycles_leak_no_descriptors(loop: Loop) -> None:
    async def one_cycle(port: int) -> bytes:
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        writer.write(b"cycle")
        reply = await reader.readexactly(5)
        writer.close()
        await writer.wait_closed()
        return reply

    async def main() -> tuple[int, int, list[bytes]]:
        server = await loop.create_server(EchoProto, LOCALHOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            await one_cycle(port)
            await asyncio.sleep(0.01)
            settle()
            before = open_fd_count()
            replies = [await one_cycle(port) for _ in range(100)]
            await asyncio.sleep(0.05)
            settle()
            return before, open_fd_count(), replies

    before, after, replies = run_within(loop, main())
    assert replies == [b"cycle"] * 100
    assert after <= before + 2


@needs_proc
def test_failed_connections_and_watchers_leak_no_descriptors(loop: Loop) -> None:
    port = closed_port()

    async def fail_in_every_way() -> int:
        failures = 0
        attempts: list[Callable[[], Awaitable[Any]]] = [
            lambda: loop.create_connection(asyncio.Protocol, LOCALHOST, port),
            lambda: loop.create_connection(
                asyncio.Protocol, "not-an-ip", 80, flags=socket.AI_NUMERICHOST
            ),
            lambda: loop.create_connection(asyncio.Protocol, LOCALHOST, 80, family=9999),
        ]
        for _ in range(20):
            for attempt in attempts:
                try:
                    await attempt()
                except OSError:
                    failures += 1
            try:
                loop.add_reader(closed_fd(), lambda: None)
            except OSError:
                failures += 1
        return failures

    run_within(loop, fail_in_every_way())
    settle()
    before = open_fd_count()
    failures = run_within(loop, fail_in_every_way())
    settle()
    assert failures == 80
    assert open_fd_count() <= before + 2


@needs_proc
def test_creating_and_closing_loops_leaks_no_descriptors() -> None:
    def use_a_loop() -> None:
        fresh = Loop()
        try:

            async def echo() -> bytes:
                server = await fresh.create_server(EchoProto, LOCALHOST, 0)
                async with server:
                    port = server.sockets[0].getsockname()[1]
                    reader, writer = await asyncio.open_connection(LOCALHOST, port)
                    writer.write(b"x")
                    reply = await reader.readexactly(1)
                    writer.close()
                    await writer.wait_closed()
                    return reply

            assert run_within(fresh, echo()) == b"x"
        finally:
            fresh.close()

    use_a_loop()
    settle()
    before = open_fd_count()
    for _ in range(20):
        use_a_loop()
    settle()
    assert open_fd_count() <= before + 2


# -- as uvloop: the cases its test suite pins ----------------------------------------------------


async def udp_endpoint(loop: Loop, **kwargs: Any) -> asyncio.DatagramTransport:
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=(LOCALHOST, 0), family=socket.AF_INET, **kwargs
    )
    return transport


@pytest.mark.parametrize("address", [("localhost", 80), ("::1", 80)], ids=["name", "ipv6"])
def test_udp_sendto_an_address_that_is_no_ip_of_the_family_raises_value_error(
    loop: Loop, address: tuple[str, int]
) -> None:
    async def main() -> None:
        transport = await udp_endpoint(loop)
        try:
            with pytest.raises(ValueError, match="family mismatch or a DNS lookup"):
                transport.sendto(b"x", address)
        finally:
            transport.close()

    run_within(loop, main())


def test_udp_sendto_after_close_is_dropped_without_an_error(loop: Loop) -> None:
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    async def main() -> None:
        transport = await udp_endpoint(loop)
        transport.close()
        transport.sendto(b"x", (LOCALHOST, 9))
        await asyncio.sleep(0.01)
        transport.sendto(b"x", (LOCALHOST, 9))

    run_within(loop, main())
    assert reported == []


def test_udp_reuse_address_true_raises_value_error(loop: Loop) -> None:
    with pytest.raises(ValueError, match="reuse_address"):
        run_within(loop, udp_endpoint(loop, reuse_address=True))


def test_udp_reuse_address_false_warns_deprecation(loop: Loop) -> None:
    with pytest.warns(DeprecationWarning):
        transport = run_within(loop, udp_endpoint(loop, reuse_address=False))
    transport.close()
