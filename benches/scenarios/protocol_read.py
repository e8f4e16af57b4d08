"""One read through a stream transport into ``Protocol.data_received``, ping-pong over a
socketpair in one process: the protocol sends the next message on the raw peer.
``python protocol_read.py LOOP N``"""

from __future__ import annotations

import asyncio
import socket
import sys

from monitored_ioloop.bench.loops import LOOPS

PAYLOAD = b"x" * 100


def main(loop_name: str, n: int) -> None:
    loop = LOOPS[loop_name]()
    ours, peer = socket.socketpair()
    done = loop.create_future()
    left = n

    class Reader(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                done.set_result(None)
            else:
                peer.send(PAYLOAD)

    async def run() -> None:
        transport, _ = await loop.connect_accepted_socket(Reader, ours)
        peer.send(PAYLOAD)
        await done
        transport.close()

    loop.run_until_complete(run())
    loop.close()
    peer.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
