"""The ``top`` command line: fetch, render, repeat once a second until Ctrl-C; one line on
stderr and exit status 1 when the source cannot be read."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

from monitored_ioloop.top.view import Doc, fetch, render, resolve

_CLEAR = "\x1b[H\x1b[2J"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitored_ioloop.top",
        description="A live view of a monitored_ioloop loop: utilisation, dispatch rate, "
        "wall-time and lag percentiles, top callbacks, slow callbacks, watchdog reports.",
    )
    parser.add_argument("source", help="the JSON endpoint (http://host:port or "
                        "http://host:port/monitored_ioloop.json) or a recorded snapshot file")
    parser.add_argument("--once", action="store_true", help="print one view and exit")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    parser.add_argument("--count", type=int, default=0,
                        help="stop after this many refreshes (default: until Ctrl-C)")
    parser.add_argument("--rows", type=int, default=10, help="rows per table")
    args = parser.parse_args(argv)
    source = resolve(args.source)
    previous: Optional[Doc] = None
    shown = 0
    clear = sys.stdout.isatty() and not args.once
    try:
        while True:
            try:
                doc = fetch(source)
            except (OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                print(f"monitored_ioloop.top: cannot read {source}: {reason}", file=sys.stderr)
                return 1
            view = render(doc, previous, source, rows=args.rows)
            print((_CLEAR if clear else "") + view, flush=True)
            shown += 1
            if args.once or (args.count and shown >= args.count):
                return 0
            previous = doc
            time.sleep(args.interval)
            if not clear:
                print(flush=True)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
