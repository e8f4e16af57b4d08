"""One echo through a stream transport: ``data_received`` writes the data back with
``transport.write``; the raw peer of the socketpair takes it and sends the next message.
``python protocol_echo.py LOOP N``"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from monitored_ioloop.bench.loops import LOOPS

PAYLOAD = b"x" * 100


def main(loop_name: str, n: int) -> None:
    loop = LOOPS[loop_name]()
    ours, peer = socket.socketpair()
    done = loop.create_future()
    left = n

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            # uvloop's transports are not registered as asyncio.Transport: not checked.
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            nonlocal left
            self.transport.write(data)
            peer.recv(200)
            left -= 1
            if left == 0:
                done.set_result(None)
            else:
                peer.send(PAYLOAD)

    async def run() -> None:
        transport, _ = await loop.connect_accepted_socket(Echo, ours)
        peer.send(PAYLOAD)
        await done
        transport.close()

    loop.run_until_complete(run())
    loop.close()
    peer.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
