"""What ``top`` shows, from ``LoopSnapshot.to_dict()`` documents: over the window between two
snapshots when there are two (rates, utilisation, percentiles from histogram bucket deltas,
top callbacks by busy time in the window), else since the loop started."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any, Optional

from monitored_ioloop.endpoint import JSON_PATH

__all__ = ["fetch", "render", "resolve"]

Doc = dict[str, Any]


def resolve(source: str) -> str:
    """An endpoint base URL (``http://host:port``) gets the JSON path; anything else as is."""
    parts = urllib.parse.urlsplit(source)
    if parts.scheme in ("http", "https") and parts.path in ("", "/"):
        return urllib.parse.urlunsplit(parts._replace(path=JSON_PATH))
    return source


def fetch(source: str, timeout: float = 2.0) -> Doc:
    """A snapshot document from a URL or a file; ``OSError``/``ValueError`` when unreadable."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(resolve(source), timeout=timeout) as response:
            data: Doc = json.loads(response.read())
    else:
        with open(source, encoding="utf-8") as file:
            data = json.load(file)
    if not isinstance(data, dict) or "dispatches" not in data:
        raise ValueError(f"{source}: not a monitored_ioloop snapshot")
    return data


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds * 1e6:.0f}us"


def _cumulative_at(buckets: list[list[float]], bound: float) -> float:
    count = 0.0
    for upper, cumulative in buckets:
        if upper > bound:
            break
        count = cumulative
    return count


def _percentiles(hist: Doc, previous: Optional[Doc]) -> dict[str, Optional[float]]:
    """p50/p90/p99/p99.9 and max: from the document's own figures, or over the window from the
    bucket deltas (bounded by the native buckets' 1.6 % error)."""
    names = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
    if previous is None:
        out: dict[str, Optional[float]] = {k: hist.get(k) for k, _ in names}
        out["max"] = hist.get("max")
        return out
    new_b = hist.get("buckets") or []
    old_b = previous.get("buckets") or []
    bounds = sorted({b[0] for b in new_b})
    deltas = [(u, _cumulative_at(new_b, u) - _cumulative_at(old_b, u)) for u in bounds]
    total = deltas[-1][1] if deltas else 0
    out = {}
    for key, q in names:
        out[key] = None
        if total > 0:
            target = q / 100 * total
            out[key] = next((u for u, c in deltas if c >= target), bounds[-1])
    # The window's largest value lies in the highest bucket that gained values, and never
    # above the loop's exact maximum so far.
    highest = None
    below = 0.0
    for upper, cumulative in deltas:
        if cumulative > below:
            highest = upper
        below = cumulative
    if highest is not None and hist.get("max") is not None:
        highest = min(highest, float(hist["max"]))
    out["max"] = highest
    return out


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def render(
    doc: Doc, previous: Optional[Doc] = None, source: str = "", rows: int = 10
) -> str:
    """The view of ``doc``; with ``previous`` (an earlier snapshot of the same loop), over the
    window between them."""
    window = None
    if previous is not None:
        window = doc.get("timestamp", 0.0) - previous.get("timestamp", 0.0)
        if window <= 0:
            previous, window = None, None

    def delta(key: str) -> float:
        value = float(doc.get(key) or 0)
        return value - float(previous.get(key) or 0) if previous is not None else value

    lines = [f"monitored_ioloop top  {source}".rstrip()]
    if window is not None:
        busy, idle = delta("busy_time"), delta("idle_time")
        util = busy / (busy + idle) if busy + idle > 0 else 0.0
        lines.append(
            f"window {window:.1f}s   utilisation {util * 100:5.1f}%   "
            f"dispatches {delta('dispatches') / window:,.0f}/s   "
            f"errors {delta('errors') / window:,.0f}/s   "
            f"iterations {delta('iterations') / window:,.0f}/s"
        )
    else:
        lines.append(
            f"since start   utilisation {float(doc.get('utilization') or 0) * 100:5.1f}%   "
            f"dispatches {int(doc.get('dispatches') or 0):,}   "
            f"errors {int(doc.get('errors') or 0):,}   "
            f"iterations {int(doc.get('iterations') or 0):,}"
        )
    lines.append(
        f"pending: handles {doc.get('pending_handles', 0)}   timers {doc.get('pending_timers', 0)}"
        f"   io watchers {doc.get('io_watchers', 0)}   transports {doc.get('open_transports', 0)}"
    )
    lines.append("")
    prev_hist = previous if previous is not None else {}
    hist_rows = []
    for label, key in (("wall time", "wall_time"), ("loop lag", "loop_lag")):
        hist = doc.get(key) or {}
        p = _percentiles(hist, prev_hist.get(key) or {} if previous is not None else None)
        hist_rows.append([label] + [_duration(p[k]) for k in ("p50", "p90", "p99", "p999", "max")])
    lines += _table(["", "p50", "p90", "p99", "p99.9", "max"], hist_rows)

    lines += ["", "top callbacks by busy time" + (" (window)" if window else "")]
    top = _top_callbacks(doc, previous)[:rows]
    lines += _table(
        ["busy", "count", "max", "name", "location"],
        [[_duration(t["busy_time"]), f"{int(t['count']):,}", _duration(t.get("max_wall_time")),
          str(t.get("name", "")), str(t.get("location") or "")] for t in top],
    ) if top else ["  (none)"]

    threshold = doc.get("slow_callback_threshold")
    lines += ["", f"slow callbacks (threshold {_duration(threshold) if threshold else 'off'}, "
                  f"{int(doc.get('slow_callbacks_total') or 0):,} total), latest first"]
    slow = list(reversed(doc.get("slow_callbacks") or []))[:rows]
    lines += _table(
        ["wall", "lag", "kind", "name", "location"],
        [[_duration(s.get("wall_time")), _duration(s.get("loop_lag")), str(s.get("kind", "")),
          str(s.get("name", "")), str(s.get("location") or "?")] for s in slow],
    ) if slow else ["  (none)"]

    reports = list(reversed(doc.get("watchdog_reports") or []))[:rows]
    lines += ["", f"watchdog reports ({int(doc.get('watchdog_reports_total') or 0):,} total)"]
    lines += _table(
        ["blocked", "finished", "name", "innermost frame"],
        [[_duration(r.get("blocked_for")),
          _duration(r.get("wall_time")) if r.get("wall_time") is not None else "running",
          str(r.get("name", "")),
          _innermost(str(r.get("stack") or "")) if not r.get("gil_unavailable") else "(GIL held)"]
         for r in reports],
    ) if reports else ["  (none)"]
    return "\n".join(lines)


def _innermost(stack: str) -> str:
    frames = [line.strip() for line in stack.splitlines() if line.strip().startswith("File ")]
    return frames[-1] if frames else ""


def _top_callbacks(doc: Doc, previous: Optional[Doc]) -> list[Doc]:
    current = list(doc.get("top_callbacks") or [])
    if previous is None:
        return sorted(current, key=lambda t: -float(t.get("busy_time") or 0))
    before = {t.get("name"): t for t in previous.get("top_callbacks") or []}
    window = []
    for t in current:
        old = before.get(t.get("name"), {})
        busy = float(t.get("busy_time") or 0) - float(old.get("busy_time") or 0)
        count = int(t.get("count") or 0) - int(old.get("count") or 0)
        if count > 0:
            window.append({**t, "busy_time": busy, "count": count})
    return sorted(window, key=lambda t: -t["busy_time"])
