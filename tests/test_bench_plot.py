"""``python -m monitored_ioloop.bench --plot/--compare``, on a saved ``--json`` run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from integration_helpers import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

RUN = {
    "rounds": 2,
    "quick": True,
    "workloads": {
        "call_soon": {"loops": {
            "uvloop": {"ops_per_second": 2e6, "samples": [2e6], "speed_vs_uvloop": 1.0},
            "native": {"ops_per_second": 2.4e6, "samples": [2.4e6], "speed_vs_uvloop": 1.2},
        }},
        "echo-protocol-1KiB": {"loops": {
            "uvloop": {"ops_per_second": 5e4, "samples": [5e4], "speed_vs_uvloop": 1.0},
            "native": {"ops_per_second": 4.5e4, "samples": [4.5e4], "speed_vs_uvloop": 0.9},
        }},
    },
}


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitored_ioloop.bench", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=50)


@pytest.fixture
def run_json(tmp_path: Path) -> Path:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(RUN))
    return path


def test_plot_html_is_self_contained(tmp_path: Path, run_json: Path) -> None:
    page = tmp_path / "bench.html"
    out = bench("--results", str(run_json), "--plot", str(page))
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    assert "<svg" in text and "call_soon" in text and "1.20x" in text and "0.90x" in text
    assert "<script" not in text and "src=" not in text


def test_plot_png(tmp_path: Path, run_json: Path) -> None:
    pytest.importorskip("matplotlib")
    image = tmp_path / "bench.png"
    out = bench("--results", str(run_json), "--plot", str(image))
    assert out.returncode == 0, out.stderr
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_prints_what_changed(tmp_path: Path, run_json: Path) -> None:
    newer = json.loads(json.dumps(RUN))
    newer["workloads"]["call_soon"]["loops"]["native"]["ops_per_second"] = 3e6
    newer["workloads"]["call_soon"]["loops"]["native"]["speed_vs_uvloop"] = 1.5
    new_path = tmp_path / "new.json"
    new_path.write_text(json.dumps(newer))
    out = bench("--results", str(new_path), "--compare", str(run_json))
    assert out.returncode == 0, out.stderr
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("call_soon / native")]
    assert "+25.0%" in line and "1.20x->1.50x" in line and line.endswith(">>")


def test_a_short_real_run_plots(tmp_path: Path) -> None:
    page = tmp_path / "bench.html"
    out = bench("--loops", "native", "--micro", "call_soon", "--echo", "--rounds", "1",
                "--quick", "--plot", str(page))
    assert out.returncode == 0, out.stderr
    assert "call_soon" in page.read_text()
