"""Drawing and comparing benchmark results (the ``--json`` document): ``--plot FILE`` writes
the per-workload speed ratios as a PNG (matplotlib, ``pip install monitored_ioloop[plot]``) or
as a self-contained HTML page (no dependency); ``--compare OLD.json`` prints what changed since
an earlier run; ``--results FILE`` draws or compares a saved run without measuring again."""

from __future__ import annotations

import argparse
import html
import json
from typing import Any, Optional

__all__ = ["add_arguments", "compare", "finish", "load", "ratios", "write_html", "write_plot"]

Results = dict[str, Any]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plot", metavar="FILE",
                        help="write the speed ratios per workload to FILE (.png or .html)")
    parser.add_argument("--compare", metavar="OLD.json",
                        help="print what changed since an earlier --json run")
    parser.add_argument("--results", metavar="RUN.json",
                        help="use a saved --json run instead of measuring")


def load(path: str) -> Results:
    with open(path, encoding="utf-8") as file:
        data: Results = json.load(file)
    if "workloads" not in data:
        raise ValueError(f"{path}: not a benchmark --json document")
    return data


def finish(args: argparse.Namespace, results: Results) -> list[str]:
    """The ``--plot``/``--compare`` work for ``results``; lines to print."""
    out: list[str] = []
    if args.plot:
        write_plot(results, args.plot)
        out.append(f"wrote {args.plot}")
    if args.compare:
        out.append(compare(load(args.compare), results))
    return out


def _loops(results: Results) -> list[str]:
    loops: list[str] = []
    for data in results["workloads"].values():
        for loop in data["loops"]:
            if loop not in loops:
                loops.append(loop)
    return loops


def ratios(results: Results) -> tuple[str, dict[str, dict[str, float]]]:
    """The baseline and, per workload, each loop's speed relative to it: the run's own
    ``speed_vs_uvloop`` when uvloop ran, else throughput relative to asyncio (or the first
    loop)."""
    loops = _loops(results)
    baseline = "uvloop" if "uvloop" in loops else ("asyncio" if "asyncio" in loops else loops[0])
    table: dict[str, dict[str, float]] = {}
    for workload, data in results["workloads"].items():
        row = data["loops"]
        base = row.get(baseline, {}).get("ops_per_second")
        table[workload] = {}
        for loop, entry in row.items():
            if "speed_vs_uvloop" in entry and baseline == "uvloop":
                table[workload][loop] = float(entry["speed_vs_uvloop"])
            elif base:
                table[workload][loop] = float(entry["ops_per_second"]) / float(base)
    return baseline, table


def write_plot(results: Results, path: str) -> None:
    """PNG through matplotlib, or HTML, chosen by the file's extension."""
    lower = path.lower()
    if lower.endswith(".html") or lower.endswith(".htm"):
        write_html(results, path)
    elif lower.endswith(".png"):
        _write_png(results, path)
    else:
        raise ValueError(f"--plot {path}: the file must end in .png or .html")


def _write_png(results: Results, path: str) -> None:
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise SystemExit(
            "--plot .png needs matplotlib (pip install 'monitored_ioloop[plot]'); "
            ".html needs nothing"
        ) from None
    matplotlib.use("Agg")
    from matplotlib import pyplot  # type: ignore[import-not-found,unused-ignore]

    baseline, table = ratios(results)
    workloads = list(table)
    loops = [lp for lp in _loops(results) if any(lp in table[w] for w in workloads)]
    height = 0.8 / max(1, len(loops))
    figure, axes = pyplot.subplots(figsize=(10, 0.45 * len(workloads) * max(1, len(loops)) + 1.5))
    for i, loop in enumerate(loops):
        ys = [w_i + i * height for w_i in range(len(workloads))]
        axes.barh(ys, [table[w].get(loop, 0.0) for w in workloads], height=height, label=loop)
    axes.set_yticks([w_i + 0.4 - height / 2 for w_i in range(len(workloads))])
    axes.set_yticklabels(workloads)
    axes.invert_yaxis()
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel(f"speed relative to {baseline} (higher is faster)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1")


def write_html(results: Results, path: str) -> None:
    """One page, inline SVG bars and a table of the figures; no scripts, no external files."""
    baseline, table = ratios(results)
    loops = _loops(results)
    top = max([v for row in table.values() for v in row.values()] + [1.0])
    bar_h, gap, left, width = 14, 10, 210, 520
    rows_svg: list[str] = []
    y = 10
    for workload, row in table.items():
        rows_svg.append(
            f'<text x="{left - 8}" y="{y + bar_h * len(loops) / 2 + 4}" text-anchor="end">'
            f"{html.escape(workload)}</text>"
        )
        for i, loop in enumerate(loops):
            if loop not in row:
                continue
            value = row[loop]
            w = value / top * width
            colour = _COLOURS[i % len(_COLOURS)]
            by = y + i * bar_h
            rows_svg.append(
                f'<rect x="{left}" y="{by}" width="{w:.1f}" height="{bar_h - 2}" '
                f'fill="{colour}"><title>{html.escape(loop)}: {value:.2f}x</title></rect>'
                f'<text x="{left + w + 4:.1f}" y="{by + bar_h - 4}">{value:.2f}x</text>'
            )
        y += bar_h * len(loops) + gap
    one = left + width / top
    rows_svg.append(f'<line x1="{one:.1f}" x2="{one:.1f}" y1="0" y2="{y}" stroke="black"/>')
    legend = " ".join(
        f'<span style="color:{_COLOURS[i % len(_COLOURS)]}">&#9632;</span> {html.escape(lp)}'
        for i, lp in enumerate(loops)
    )
    header = "".join(f"<th>{html.escape(lp)}</th>" for lp in loops)
    body = []
    for workload, data in results["workloads"].items():
        cells = []
        for loop in loops:
            entry = data["loops"].get(loop)
            ratio = table[workload].get(loop)
            cells.append(
                "<td>-</td>" if entry is None else
                f"<td>{entry['ops_per_second']:,.0f}/s"
                + (f" ({ratio:.2f}x)" if ratio is not None else "") + "</td>"
            )
        body.append(f"<tr><th>{html.escape(workload)}</th>{''.join(cells)}</tr>")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>monitored_ioloop benchmark</title>
<style>body{{font-family:sans-serif;margin:2em}}svg text{{font-size:11px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
</style></head><body>
<h1>monitored_ioloop benchmark</h1>
<p>Speed relative to {html.escape(baseline)} per workload (higher is faster);
{results.get("rounds", "?")} rounds{", quick" if results.get("quick") else ""}.</p>
<p>{legend}</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{y}">
{"".join(rows_svg)}
</svg>
<h2>Figures</h2>
<table><tr><th>workload</th>{header}</tr>
{"".join(body)}
</table></body></html>
"""
    with open(path, "w", encoding="utf-8") as file:
        file.write(page)


def _change(old: float, new: float) -> str:
    return f"{(new / old - 1) * 100:+.1f}%" if old else "n/a"


def compare(old: Results, new: Results, threshold: float = 0.05) -> str:
    """Per workload and loop: throughput then and now, and the change; ratios to the baseline
    likewise. Changes beyond ``threshold`` (5 %) are marked ``<<`` (slower) or ``>>``."""
    lines = ["workload / loop                 old ops/s      new ops/s    change  ratio old->new"]
    _, old_ratios = ratios(old)
    _, new_ratios = ratios(new)
    for workload, data in new["workloads"].items():
        before: Optional[Results] = old["workloads"].get(workload)
        if before is None:
            lines.append(f"{workload}: new workload")
            continue
        for loop, entry in data["loops"].items():
            then = before["loops"].get(loop)
            label = f"{workload} / {loop}"
            if then is None:
                lines.append(f"{label:<30}  (loop not in the old run)")
                continue
            o, n = float(then["ops_per_second"]), float(entry["ops_per_second"])
            mark = ""
            if o and abs(n / o - 1) > threshold:
                mark = "  >>" if n > o else "  <<"
            ro = old_ratios.get(workload, {}).get(loop)
            rn = new_ratios.get(workload, {}).get(loop)
            ratio = f"{ro:.2f}x->{rn:.2f}x" if ro is not None and rn is not None else ""
            lines.append(f"{label:<30} {o:>10,.0f} {n:>14,.0f} {_change(o, n):>9}  {ratio}{mark}")
    for workload in old["workloads"]:
        if workload not in new["workloads"]:
            lines.append(f"{workload}: not in the new run")
    return "\n".join(lines)
