"""Which loop an exporter reads: one given, or the running one, held weakly so that an exporter
never keeps a loop alive; each read asks it for a fresh snapshot."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Callable, Optional

from monitored_ioloop._snapshot_types import LoopSnapshotLike

__all__ = ["SnapshotGetter", "snapshot_getter"]

SnapshotGetter = Callable[[], Optional[LoopSnapshotLike]]


def snapshot_getter(loop: Optional[Any] = None) -> SnapshotGetter:
    """A callable returning ``loop``'s current snapshot, or None once the loop is gone.

    ``loop`` defaults to the running loop; ``TypeError`` for a loop without monitoring (not
    ours), ``RuntimeError`` when no loop is given and none is running."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "no running event loop: pass loop= (a monitored_ioloop loop)"
            ) from None
    if not callable(getattr(loop, "monitor_snapshot", None)):
        raise TypeError(f"{type(loop).__qualname__} is not a monitored_ioloop loop")
    ref = weakref.ref(loop)

    def get() -> Optional[LoopSnapshotLike]:
        target: Any = ref()
        if target is None:
            return None
        snapshot: LoopSnapshotLike = target.monitor_snapshot()
        return snapshot

    return get
