"""What the Protocol and uvicorn scenarios share: a transport made on one end of a socketpair,
driven by the raw peer at the other end until the scenario's future is done; then everything
is closed."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable, Optional


def run_over_socketpair(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    ours: socket.socket,
    peer: socket.socket,
    first_message: bytes,
    done: asyncio.Future[Any],
    on_peer_readable: Optional[Callable[[], None]] = None,
) -> None:
    """Runs `loop` until `done`: the transport on `ours` with `protocol_factory`'s protocol,
    `first_message` sent from `peer`, and `on_peer_readable` (if given) watching the peer."""

    async def run() -> None:
        transport, _ = await loop.connect_accepted_socket(protocol_factory, ours)
        if on_peer_readable is not None:
            loop.add_reader(peer.fileno(), on_peer_readable)
        peer.send(first_message)
        await done
        if on_peer_readable is not None:
            loop.remove_reader(peer.fileno())
        transport.close()

    loop.run_until_complete(run())
    loop.close()
    peer.close()
