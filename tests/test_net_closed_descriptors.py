"""Descriptors closed behind the loop's back: never a crash, never bytes sent to a socket that
reused the number. (Each risky case runs in a child process, so an abort would fail the test
rather than kill the test run.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(60)


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_closing_a_descriptor_right_after_watching_it_does_not_crash() -> None:
    child = run_child(
        """
        import socket
        from monitored_ioloop.loop import Loop
        loop = Loop()
        a, b = socket.socketpair()
        def watch_then_close():
            loop._add_reader(a.fileno(), lambda: None)
            a.close()  # before the loop's next poll has registered it
        loop.call_soon(watch_then_close)
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
        loop.close()
        print("survived")
        """
    )
    assert child.returncode == 0, child.stderr
    assert "survived" in child.stdout


def test_watching_a_descriptor_already_closed_raises_ebadf() -> None:
    child = run_child(
        """
        import errno, socket
        from monitored_ioloop.loop import Loop
        loop = Loop()
        a, b = socket.socketpair()
        fd = a.fileno()
        a.close()
        try:
            loop._add_writer(fd, lambda: None)
        except OSError as e:
            print("errno", e.errno == errno.EBADF)
        loop.close()
        """
    )
    assert child.returncode == 0, child.stderr
    assert "errno True" in child.stdout


def test_a_sock_recv_whose_socket_is_closed_under_it_ends_without_a_crash() -> None:
    child = run_child(
        """
        import asyncio, socket
        from monitored_ioloop.loop import Loop
        async def main():
            loop = asyncio.get_running_loop()
            a, b = socket.socketpair()
            a.setblocking(False)
            reader = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            a.close()
            await asyncio.sleep(0.01)
            reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, OSError):
                pass
            b.close()
        loop = Loop()
        loop.run_until_complete(main())
        loop.close()
        print("survived")
        """
    )
    assert child.returncode == 0, child.stderr
    assert "survived" in child.stdout


def test_a_write_after_a_draining_close_never_reaches_a_socket_that_reused_the_number() -> None:
    child = run_child(
        """
        import asyncio, socket
        from monitored_ioloop.loop import Loop
        loop = Loop()
        lost = loop.create_future()
        class P(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(None)
        async def main():
            a, b = socket.socketpair()
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            t, _ = await loop.connect_accepted_socket(P, a)
            t.write(b"x" * 200_000)
            t.close()  # waits for the buffer to drain
            b.setblocking(False)
            while not lost.done():
                try:
                    b.recv(1 << 20)
                except BlockingIOError:
                    pass
                await asyncio.sleep(0.001)
            c, d = socket.socketpair()  # may take the transport's old descriptor number
            c.setblocking(False)
            d.setblocking(False)
            t.write(b"LEAKED")
            await asyncio.sleep(0.01)
            for s in (c, d):
                try:
                    print("leaked", s.recv(100))
                except BlockingIOError:
                    pass
            for s in (b, c, d):
                s.close()
        loop.run_until_complete(main())
        loop.close()
        print("done")
        """
    )
    assert child.returncode == 0, child.stderr
    assert "done" in child.stdout
    assert "leaked" not in child.stdout
