"""``python -m monitored_ioloop.top URL``: a live terminal view of a loop's monitoring,
refreshed once a second, read from the JSON endpoint (``/monitored_ioloop.json``) or a recorded
snapshot file. ``render`` turns one snapshot (and the one before it) into the table."""

from monitored_ioloop.top.view import fetch, render

__all__ = ["fetch", "render"]
