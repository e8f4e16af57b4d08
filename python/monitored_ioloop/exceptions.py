"""Exceptions of the original package, kept under their original names."""

from __future__ import annotations

__all__ = ["NoUvLoopInstalled"]


class NoUvLoopInstalled(ImportError):
    """Raised by the original package when uvloop was missing. The native loop never needs
    uvloop, so nothing here raises it any more; it stays importable for code that catches it."""

    def __init__(self) -> None:
        super().__init__(
            "Please install uvloop compatible version via `pip install monitored_ioloop[uvloop]`"
        )
