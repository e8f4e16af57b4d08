"""`make check-sdist`: the sdist as pip meets it where no wheel fits (minutes: a full build).

1. No Rust and no C compiler on PATH: `pip install` of the sdist stops with the build
   backend's one short message (build_backend/), not maturin fetching a toolchain or a page of
   cargo output.
2. An interpreter whose wheel is missing: `pip install --find-links` over a folder holding the
   sdist and every other wheel falls back to the sdist, builds it with cargo (libuv bundled,
   libclang from the `libclang` wheel, nothing set by this project's Makefile), and the result
   runs a coroutine.

$CHECK_SDIST_PYTHON names the interpreter for step 2 (default: the newest found).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DIST, ROOT, bin_without_compilers, clean_env, interpreters, version

EXPECTED_MESSAGE = "building from source needs Rust (cargo)"
SMOKE_TEST = (
    "import asyncio; from monitored_ioloop.loop import Loop; loop = Loop(); "
    "print('ran on', type(loop).__name__, loop.run_until_complete(asyncio.sleep(0, 'ok')))"
)


def _venv(python: str, where: Path) -> str:
    subprocess.run([python, "-m", "venv", str(where)], check=True, env=clean_env())
    return str(where / "bin" / "python")


def check_missing_rust(python: str, sdist: Path, workdir: Path) -> bool:
    vpy = _venv(python, workdir / "venv")
    path = f"{workdir / 'venv' / 'bin'}{os.pathsep}{bin_without_compilers(workdir / 'bin')}"
    env = {k: v for k, v in clean_env(PATH=path).items() if k not in ("CC", "CARGO")}
    result = subprocess.run(
        [vpy, "-m", "pip", "install", "--disable-pip-version-check", "--no-cache-dir", str(sdist)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    print("\n--- pip install of the sdist without Rust or a C compiler:")
    print(output)
    ok = result.returncode != 0 and EXPECTED_MESSAGE in output and "Compiling" not in output
    print(f"--- exit code {result.returncode}; the short message {'is' if ok else 'is NOT'} there")
    return ok


def check_fallback(python: str, tag: str, sdist: Path, workdir: Path, ver: str) -> bool:
    links = workdir / "links"
    links.mkdir()
    shutil.copy(sdist, links)
    for wheel in DIST.glob(f"monitored_ioloop-{ver}-*.whl"):
        if f"-{tag}-{tag}-" not in wheel.name:
            shutil.copy(wheel, links)
    print(f"\n--- {tag}: pip install from a folder with {len(os.listdir(links))} files, none a"
          f" {tag} wheel ({python})")  # fmt: skip
    vpy = _venv(python, workdir / "venv")
    # The machine's PATH (cargo, cc) less this checkout's .venv (maturin, libclang).
    system = [d for d in os.environ["PATH"].split(os.pathsep) if Path(d) != ROOT / ".venv" / "bin"]
    env = clean_env(PATH=os.pathsep.join([str(workdir / "venv" / "bin"), *system]))
    started = time.perf_counter()
    result = subprocess.run(
        [vpy, "-m", "pip", "install", "--disable-pip-version-check", "--no-cache-dir",
         "--find-links", str(links), f"monitored_ioloop=={ver}"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    output = result.stdout + result.stderr
    built = (
        "Building wheel for monitored_ioloop" in output
        or "Building wheel for monitored-ioloop" in output
    )
    print("\n".join(line for line in output.splitlines() if "monitored" in line.lower()))
    if result.returncode != 0:
        print(output[-4000:])
        return False
    smoke = subprocess.run(
        [vpy, "-c", SMOKE_TEST], env=env, capture_output=True, text=True, check=False
    )
    print(smoke.stdout.strip(), smoke.stderr.strip()[-2000:])
    print(f"--- built from the sdist: {built}; install took {seconds:.0f} s")
    return built and smoke.returncode == 0


def main() -> None:
    ver = version()
    sdist = DIST / f"monitored_ioloop-{ver}.tar.gz"
    if not sdist.exists():
        sys.exit(f"no {sdist.name} in dist/ (make wheels)")
    found = interpreters()
    chosen = os.environ.get("CHECK_SDIST_PYTHON")
    python = next((p for p in found if p.path == chosen), found[-1]) if chosen else found[-1]
    if chosen and python.path != chosen:
        sys.exit(f"CHECK_SDIST_PYTHON={chosen} is not among {[p.path for p in found]}")
    with tempfile.TemporaryDirectory(prefix="check-sdist-") as tmp:
        missing_ok = check_missing_rust(python.path, sdist, Path(tmp))
    with tempfile.TemporaryDirectory(prefix="check-sdist-") as tmp:
        fallback_ok = check_fallback(python.path, python.tag, sdist, Path(tmp), ver)
    if not (missing_ok and fallback_ok):
        sys.exit("check-sdist: FAILED")
    print("\ncheck-sdist: the sdist builds where no wheel fits, and says so clearly without Rust")


if __name__ == "__main__":
    main()
