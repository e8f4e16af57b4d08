"""`make wheels`: a release wheel for every supported CPython found on this machine, and the
sdist, into dist/ (older monitored_ioloop files there are removed first).

Linux: `maturin --zig --compatibility manylinux2014`: zig links against glibc 2.17's symbols
and compiles libuv's C, so the wheels are manylinux_2_17 on any host, with no container and no
root. macOS: a plain maturin build for the runner's architecture (MACOSX_DEPLOYMENT_TARGET
10.12 on x86_64, 11.0 on arm64); untested here, run by .github/workflows/release.yml.

$PYTHONS (space-separated interpreter paths) overrides the interpreters found.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from common import DIST, ROOT, clean_env, interpreters, run, version


def _macos_env() -> dict[str, str]:
    """bindgen's libclang (the PyPI wheel) knows neither the SDK nor its own builtin headers:
    point it at both, as the Makefile does with gcc's headers on Linux."""
    sdk = subprocess.run(
        ["xcrun", "--show-sdk-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    resources = subprocess.run(
        ["clang", "-print-resource-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    default_target = "11.0" if platform.machine() == "arm64" else "10.12"
    return {
        "MACOSX_DEPLOYMENT_TARGET": os.environ.get("MACOSX_DEPLOYMENT_TARGET", default_target),
        "SDKROOT": os.environ.get("SDKROOT", sdk),
        "BINDGEN_EXTRA_CLANG_ARGS": f"-I{resources}/include -isysroot {sdk}",
    }


def main() -> None:
    pythons = interpreters()
    print("building", version(), "for", ", ".join(f"{p.tag} ({p.path})" for p in pythons))
    DIST.mkdir(exist_ok=True)
    for old in DIST.glob("monitored_ioloop-*"):
        old.unlink()

    maturin = str(Path(sys.executable).parent / "maturin")
    manifest = str(ROOT / "Cargo.toml")
    # Keep the Makefile's LIBCLANG_PATH and BINDGEN_EXTRA_CLANG_ARGS (bindgen needs them); maturin
    # sets PYO3_PYTHON itself for each interpreter.
    env = {k: v for k, v in os.environ.items() if k not in ("PYO3_PYTHON", "VIRTUAL_ENV")}
    build = [maturin, "build", "--release", "-m", manifest, "--out", str(DIST)]
    for python in pythons:
        build += ["-i", python.path]
    cwd = ROOT
    if sys.platform == "linux":
        build += ["--zig", "--compatibility", "manylinux2014"]
        # zig reports its libc headers relative to the working directory when it is below it
        # (.venv/...), and maturin hands those paths to bindgen, which runs in libuv-sys2's own
        # directory and then finds no stdio.h. From release/, zig gives absolute paths.
        cwd = ROOT / "release"
    elif sys.platform == "darwin":
        env.update(_macos_env())
    run(build, cwd=cwd, env=env)
    run([maturin, "sdist", "-m", manifest, "--out", str(DIST)], env=clean_env())

    print("\ndist/:")
    for built in sorted(DIST.glob("monitored_ioloop-*")):
        print(f"  {built.name}  {built.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
