"""monitored_ioloop: an asyncio event loop on libuv, written in Rust, that times every callback
it runs and reports it. Importing the package never needs uvloop."""

from monitored_ioloop.monitored_asyncio import (
    MonitoredAsyncIOEventLoopPolicy,
    monitored_asyncio_loop_factory,
)
from monitored_ioloop.monitored_uvloop import (
    MonitoredUvloopEventLoopPolicy,
    monitored_uvloop_loop_factory,
)
from monitored_ioloop.monitoring import IoLoopMonitorState

__all__ = [
    "IoLoopMonitorState",
    "MonitoredAsyncIOEventLoopPolicy",
    "MonitoredUvloopEventLoopPolicy",
    "monitored_asyncio_loop_factory",
    "monitored_uvloop_loop_factory",
]
