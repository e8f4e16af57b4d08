"""One echo through asyncio streams: a coroutine reads with ``StreamReader.read`` and writes
back with ``StreamWriter.write`` and ``drain``; the raw peer of the socketpair takes it and
sends the next message. ``python streams_echo.py LOOP N``"""

from __future__ import annotations

import asyncio
import socket
import sys

from monitored_ioloop.bench.loops import LOOPS

PAYLOAD = b"x" * 100


def main(loop_name: str, n: int) -> None:
    loop = LOOPS[loop_name]()
    ours, peer = socket.socketpair()

    async def run() -> None:
        reader, writer = await asyncio.open_connection(sock=ours)
        peer.send(PAYLOAD)
        for i in range(n):
            data = await reader.read(65536)
            writer.write(data)
            await writer.drain()
            peer.recv(200)
            if i + 1 < n:
                peer.send(PAYLOAD)
        writer.close()

    loop.run_until_complete(run())
    loop.close()
    peer.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
