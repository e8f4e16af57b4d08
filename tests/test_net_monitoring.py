"""What the monitor callback reports for network work: reader callbacks and protocol callbacks
appear by name, with a lag that is never negative and stays small while the loop is idle, and
with the wall time a slow protocol really took."""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from typing import Any, Awaitable, Iterator, Optional, TypeVar

import pytest
from monitored_ioloop.loop import Loop
from monitored_ioloop.monitoring import IoLoopMonitorState

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")

LOCALHOST = "127.0.0.1"
IDLE_LAG_LIMIT_S = 0.05
SLOW_S = 0.05

# What asyncio's selector transports register as their read callback. The target is that a
# read is reported under the protocol's method instead ("EchoProto.data_received").
TRANSPORT_READ_NAMES = ("_SelectorSocketTransport._read_ready", "_SelectorTransport._read_ready")


class Reports(list):  # type: ignore[type-arg]
    def __call__(self, state: IoLoopMonitorState) -> None:
        self.append(state)

    def names(self) -> collections.Counter[str]:
        return collections.Counter(s.callback_pretty_name for s in self)

    def named(self, *names: str) -> list[IoLoopMonitorState]:
        return [s for s in self if s.callback_pretty_name in names]


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def monitored_loop(reports: Reports) -> Iterator[Loop]:
    event_loop = Loop(monitor_callback=reports)
    try:
        yield event_loop
    finally:
        event_loop.close()


def run_within(loop: Loop, awaitable: Awaitable[T], timeout: float = 20.0) -> T:
    return loop.run_until_complete(asyncio.wait_for(awaitable, timeout))


def busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def send_later(address: Any, payload: bytes, delay: float) -> threading.Thread:
    """Connects from another thread and sends ``payload`` after ``delay``: the loop sits idle
    in its poll until the bytes come."""

    def client() -> None:
        with socket.create_connection(address, timeout=10) as sock:
            time.sleep(delay)
            sock.sendall(payload)
            sock.recv(len(payload))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    return thread


class EchoProto(asyncio.Protocol):
    received: Optional[asyncio.Future[bytes]] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)
        if self.received is not None and not self.received.done():
            self.received.set_result(data)


class SlowProto(EchoProto):
    def data_received(self, data: bytes) -> None:
        busy_wait(SLOW_S)
        super().data_received(data)


def serve_one_idle_exchange(loop: Loop, protocol: type[EchoProto], payload: bytes) -> None:
    """Starts a server with ``protocol``, lets a client thread send ``payload`` once the loop
    is idle, and waits until the protocol got it."""

    async def main() -> None:
        received = loop.create_future()

        def factory() -> EchoProto:
            proto = protocol()
            proto.received = received
            return proto

        server = await loop.create_server(factory, LOCALHOST, 0)
        async with server:
            thread = send_later(server.sockets[0].getsockname(), payload, delay=0.1)
            assert await received == payload
            await loop.run_in_executor(None, thread.join, 10)

    run_within(loop, main())


class Watcher:
    def __init__(self, sock: socket.socket, fired: asyncio.Future[bytes]) -> None:
        self.sock = sock
        self.fired = fired

    def on_readable(self) -> None:
        data = self.sock.recv(64)
        asyncio.get_running_loop().remove_reader(self.sock)
        self.fired.set_result(data)


# -- reader callbacks ---------------------------------------------------------------------------


def test_a_reader_callback_is_reported_under_its_own_name(
    monitored_loop: Loop, reports: Reports
) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)

        async def main() -> bytes:
            fired: asyncio.Future[bytes] = monitored_loop.create_future()
            monitored_loop.add_reader(a, Watcher(a, fired).on_readable)
            threading.Timer(0.05, b.send, (b"ready",)).start()
            return await fired

        assert run_within(monitored_loop, main()) == b"ready"
    assert len(reports.named("Watcher.on_readable")) == 1


def test_a_reader_callback_after_an_idle_wait_has_small_non_negative_lag(
    monitored_loop: Loop, reports: Reports
) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)

        async def main() -> None:
            fired = monitored_loop.create_future()
            monitored_loop.add_reader(a, Watcher(a, fired).on_readable)
            threading.Timer(0.1, b.send, (b"x",)).start()
            await fired

        run_within(monitored_loop, main())
    (state,) = reports.named("Watcher.on_readable")
    assert 0 <= state.loop_lag < IDLE_LAG_LIMIT_S


# -- protocol callbacks -------------------------------------------------------------------------


def test_connection_made_is_reported_as_the_protocols_method(
    monitored_loop: Loop, reports: Reports
) -> None:
    serve_one_idle_exchange(monitored_loop, EchoProto, b"hello")
    print("callback names seen:", dict(reports.names()))
    assert len(reports.named("EchoProto.connection_made")) == 1


def test_a_transport_read_after_an_idle_wait_has_small_non_negative_lag(
    monitored_loop: Loop, reports: Reports
) -> None:
    serve_one_idle_exchange(monitored_loop, EchoProto, b"hello")
    reads = reports.named("EchoProto.data_received", *TRANSPORT_READ_NAMES)
    assert reads
    assert all(0 <= s.loop_lag < IDLE_LAG_LIMIT_S for s in reads)


def test_a_slow_data_received_shows_in_the_reported_wall_time(
    monitored_loop: Loop, reports: Reports
) -> None:
    serve_one_idle_exchange(monitored_loop, SlowProto, b"slow")
    reads = reports.named("SlowProto.data_received", *TRANSPORT_READ_NAMES)
    assert max(s.callback_wall_time for s in reads) >= SLOW_S


def test_every_network_report_has_non_negative_lag_and_wall_time(
    monitored_loop: Loop, reports: Reports
) -> None:
    serve_one_idle_exchange(monitored_loop, EchoProto, b"hello")
    assert len(reports) > 5
    assert all(s.loop_lag >= 0 and s.callback_wall_time >= 0 for s in reports)


def test_a_transport_read_is_reported_as_the_protocols_data_received(
    monitored_loop: Loop, reports: Reports
) -> None:
    serve_one_idle_exchange(monitored_loop, EchoProto, b"hello")
    print("callback names seen:", dict(reports.names()))
    assert reports.named("EchoProto.data_received")
    assert not reports.named(*TRANSPORT_READ_NAMES)
