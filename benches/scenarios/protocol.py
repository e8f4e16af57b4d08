"""A stream transport and an ``asyncio.Protocol``, ping-pong over a socketpair in one process.
``read``: one read into ``data_received``, which sends the next message from the raw peer.
``echo``: the same, and ``data_received`` first writes the bytes back with
``transport.write`` (the peer takes them). ``python protocol.py read|echo LOOP N``"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from monitored_ioloop.bench.loops import LOOPS
from pair import run_over_socketpair

PAYLOAD = b"x" * 100


def main(mode: str, loop_name: str, n: int) -> None:
    if mode not in ("read", "echo"):
        raise SystemExit(f"unknown mode {mode!r}: read or echo")
    echo = mode == "echo"
    loop = LOOPS[loop_name]()
    ours, peer = socket.socketpair()
    done = loop.create_future()
    left = n

    class Ping(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            # uvloop's transports are not registered as asyncio.Transport: not checked.
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            nonlocal left
            if echo:
                self.transport.write(data)
                peer.recv(200)
            left -= 1
            if left == 0:
                done.set_result(None)
            else:
                peer.send(PAYLOAD)

    run_over_socketpair(loop, Ping, ours, peer, PAYLOAD, done)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
