"""Signals: the loop's own handlers, and Ctrl-C reaching an idle loop at once. The Ctrl-C tests
run the loop in a child process and send it a real SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from monitored_ioloop.loop import Loop

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]

# The requirement is 100 ms from SIGINT to the loop raising; CI machines get some slack.
CTRL_C_LIMIT_S = 0.5


def test_signal_handler_runs_with_its_args(loop: Loop) -> None:
    calls = []

    def handler(*args: object) -> None:
        calls.append(args)
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler, "first", 2)
    try:
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(5, loop.stop)
        loop.run_forever()
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert calls == [("first", 2)]


def test_signal_handler_wakes_an_idle_loop(loop: Loop) -> None:
    calls = []

    def handler() -> None:
        calls.append(time.monotonic())
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler)
    try:
        # A timer far away: the loop waits with nothing to do until the signal arrives.
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(5, loop.stop)
        sent_before = time.monotonic()
        loop.run_forever()
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert len(calls) == 1
    assert calls[0] - sent_before < 1.0


def test_signal_handler_replaced_by_a_second_add(loop: Loop) -> None:
    calls = []
    loop.add_signal_handler(signal.SIGUSR1, calls.append, "old")
    loop.add_signal_handler(signal.SIGUSR1, calls.append, "new")
    try:
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(0.1, loop.stop)
        loop.run_forever()
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert calls == ["new"]


def test_a_loop_handler_for_sigint_runs_instead_of_keyboard_interrupt(loop: Loop) -> None:
    calls = []

    def on_sigint() -> None:
        calls.append("sigint")
        loop.stop()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        loop.call_soon(os.kill, os.getpid(), signal.SIGINT)
        loop.call_later(5, loop.stop)
        loop.run_forever()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    assert calls == ["sigint"]


def test_removing_the_sigint_handler_restores_keyboard_interrupt(loop: Loop) -> None:
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.remove_signal_handler(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_remove_signal_handler_returns_true_then_false(loop: Loop) -> None:
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_remove_signal_handler_restores_the_default_disposition(loop: Loop) -> None:
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.remove_signal_handler(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_close_removes_the_signal_handlers(loop: Loop) -> None:
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_wakeup_fd_is_restored_after_run_forever(loop: Loop) -> None:
    before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(before)
    loop.call_soon(loop.stop)
    loop.run_forever()
    after = signal.set_wakeup_fd(before)
    assert after == before


# -- Ctrl-C on an idle loop, in a child process -------------------------------------------------

RUNNER_CHILD = """
    import asyncio
    from monitored_ioloop.loop import Loop

    async def main():
        print("ready", flush=True)
        await asyncio.sleep(3600)

    with asyncio.Runner(loop_factory=Loop) as runner:
        runner.run(main())
"""

RUN_FOREVER_CHILD = """
    import functools
    from monitored_ioloop.loop import Loop

    loop = Loop()
    loop.call_soon(functools.partial(print, "ready", flush=True))
    try:
        loop.run_forever()
    finally:
        loop.close()
"""


def sigint_exit_delay(child_source: str) -> tuple[float, int, str]:
    """Starts the child, waits for its "ready", sends SIGINT; returns the seconds until it
    exited, its return code and its stderr."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(child_source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "ready", child.stderr.read() if child.stderr else ""
        # Let the loop finish the iteration that printed and settle into its idle wait.
        time.sleep(0.2)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("the child did not exit within 5 s of SIGINT")
        delay = time.monotonic() - sent
        _, stderr = child.communicate()
        return delay, child.returncode, stderr
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")
def test_ctrl_c_stops_an_idle_asyncio_runner_at_once() -> None:
    delay, returncode, stderr = sigint_exit_delay(RUNNER_CHILD)
    print(f"SIGINT -> exit of an idle asyncio.Runner(loop_factory=Loop): {delay * 1000:.1f} ms")
    assert "KeyboardInterrupt" in stderr
    assert "Traceback" in stderr
    assert returncode != 0
    assert delay < CTRL_C_LIMIT_S


def test_ctrl_c_stops_an_idle_run_forever_at_once() -> None:
    delay, returncode, stderr = sigint_exit_delay(RUN_FOREVER_CHILD)
    print(f"SIGINT -> exit of an idle run_forever(): {delay * 1000:.1f} ms")
    assert "KeyboardInterrupt" in stderr
    assert "Traceback" in stderr
    assert returncode != 0
    assert delay < CTRL_C_LIMIT_S


def test_closing_a_loop_leaves_another_loops_wakeup_fd_alone() -> None:
    code = textwrap.dedent(
        """
        import asyncio, os, signal
        from monitored_ioloop.loop import Loop
        a = Loop()
        a.run_until_complete(asyncio.sleep(0))
        b = asyncio.SelectorEventLoop()
        got = []
        b.add_signal_handler(signal.SIGUSR1, lambda: (got.append(1), b.stop()))
        a.close()
        b.call_later(0.05, os.kill, os.getpid(), signal.SIGUSR1)
        b.call_later(2.0, b.stop)
        b.run_forever()
        b.close()
        print("handled", bool(got))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert child.returncode == 0, child.stderr
    assert "handled True" in child.stdout
