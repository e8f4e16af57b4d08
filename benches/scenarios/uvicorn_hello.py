"""One HTTP request through uvicorn's httptools protocol and a hello-world ASGI app, in one
process: the peer is the raw end of a socketpair whose reader callback takes each response
and sends the next request on the same (keep-alive) connection.
``python uvicorn_hello.py LOOP N`` (needs uvicorn and httptools installed)"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from monitored_ioloop.bench.loops import LOOPS
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
BODY = b"Hello, world!"


async def app(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def main(loop_name: str, n: int) -> None:
    loop = LOOPS[loop_name]()
    asyncio.set_event_loop(loop)
    config = Config(app=app, http="httptools", lifespan="off", access_log=False, log_level="error")
    config.load()
    state = ServerState()
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    done = loop.create_future()
    left = n

    def on_response() -> None:
        nonlocal left
        if not peer.recv(65536).endswith(BODY):
            return
        left -= 1
        if left == 0:
            done.set_result(None)
        else:
            peer.send(REQUEST)

    def protocol() -> HttpToolsProtocol:
        return HttpToolsProtocol(config=config, server_state=state, app_state={})

    async def run() -> None:
        transport, _ = await loop.connect_accepted_socket(protocol, ours)
        loop.add_reader(peer.fileno(), on_response)
        peer.send(REQUEST)
        await done
        loop.remove_reader(peer.fileno())
        transport.close()

    loop.run_until_complete(run())
    loop.close()
    peer.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
