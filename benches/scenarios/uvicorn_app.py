"""One HTTP request through uvicorn's httptools protocol, in one process: the peer is the raw
end of a socketpair whose reader callback takes each response and sends the next request on
the same (keep-alive) connection. The app is one of the wall-clock benchmark's
(``monitored_ioloop.bench.net``): ``hello``, a hello-world ASGI app, or ``fastapi``, a FastAPI
endpoint returning a JSON model.
``python uvicorn_app.py hello|fastapi LOOP N`` (needs uvicorn and httptools; fastapi for
``fastapi``)"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any, Callable, Dict, Tuple

from monitored_ioloop.bench.loops import LOOPS
from monitored_ioloop.bench.net import _hello_app, _json_app
from pair import run_over_socketpair
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
#: app name -> (make the app, how its response ends)
APPS: Dict[str, Tuple[Callable[[], Any], bytes]] = {
    "hello": (lambda: _hello_app, b"hello, world"),
    "fastapi": (_json_app, b'"tags":["a","b"]}'),
}


def main(app_name: str, loop_name: str, n: int) -> None:
    if app_name not in APPS:
        raise SystemExit(f"unknown app {app_name!r}: {' or '.join(APPS)}")
    make_app, body_end = APPS[app_name]
    app = make_app()
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
        if not peer.recv(65536).endswith(body_end):
            return
        left -= 1
        if left == 0:
            done.set_result(None)
        else:
            peer.send(REQUEST)

    def protocol() -> HttpToolsProtocol:
        return HttpToolsProtocol(config=config, server_state=state, app_state={})

    run_over_socketpair(loop, protocol, ours, peer, REQUEST, done, on_response)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
