"""`make check-wheels`: what `make wheels` put in dist/, checked the way users will get it.

For the sdist: it holds every file the build needs (Cargo workspace and lock, python/,
build_backend/, LICENSE) and nothing else (no target/, .venv, caches, binaries, CI files).
For each interpreter (as release/build.py finds them): its wheel's tag is manylinux_2_17 or
older (macOS: macosx), it is small, `auditwheel show` agrees, and the extension needs only the
C library's own shared libraries. Then a fresh venv whose PATH has no Rust and no C compiler
installs it (the install is timed), then `[uvloop]` and pytest, and runs the test suite,
copied to a temporary directory, against the installed package: a fast subset, without
tests/test_cpython_asyncio.py (CPython's own suite, minutes) and tests/test_net_real_servers.py
(uvicorn, aiohttp and httpx servers; slow). `make test` runs both against the source tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from common import (
    DIST,
    ROOT,
    Interpreter,
    bin_without_compilers,
    clean_env,
    interpreters,
    version,
)

SKIPPED_TESTS = ("test_cpython_asyncio.py", "test_net_real_servers.py")
MAX_WHEEL_BYTES = 4 * 1024 * 1024
MAX_SDIST_BYTES = 1024 * 1024
# Shared libraries every manylinux system has (PEP 599's list, the part a Rust extension uses).
ALLOWED_LIBS = {
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
}
SDIST_NEEDS = (
    "PKG-INFO",
    "pyproject.toml",
    "Cargo.toml",
    "Cargo.lock",
    "build.rs",
    "LICENSE",
    "README.md",
    "build_backend/monitored_ioloop_build.py",
    "python/monitored_ioloop/__init__.py",
    "python/monitored_ioloop/py.typed",
    "src/lib.rs",
    "uv-sys/Cargo.toml",
    "uv-sys/src/lib.rs",
)
SDIST_FORBIDDEN_PARTS = {
    "target",
    ".venv",
    "dist",
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".ci",
    ".github",
    "release",
}
SDIST_FORBIDDEN_SUFFIXES = (".so", ".pyc", ".whl", ".o", ".a", ".dylib", ".tar.gz")
problems: list[str] = []


def problem(text: str) -> None:
    problems.append(text)
    print("  PROBLEM:", text, flush=True)


def check_sdist(sdist: Path, ver: str) -> None:
    print(f"\n== {sdist.name}", flush=True)
    prefix = f"monitored_ioloop-{ver}/"
    with tarfile.open(sdist) as archive:
        names = [m.name for m in archive.getmembers() if m.isfile()]
    inside = {n[len(prefix) :] for n in names if n.startswith(prefix)}
    if len(inside) != len(names):
        problem(f"sdist has files outside {prefix}")
    for needed in SDIST_NEEDS:
        if needed not in inside:
            problem(f"sdist lacks {needed}")
    if (ROOT / ".git").exists():
        tracked = subprocess.run(
            ["git", "ls-files", "src", "uv-sys", "python", "build_backend"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for path in tracked:
            if path not in inside:
                problem(f"sdist lacks tracked build input {path}")
    for path in sorted(inside):
        if SDIST_FORBIDDEN_PARTS & set(Path(path).parts) or path.endswith(SDIST_FORBIDDEN_SUFFIXES):
            problem(f"sdist should not contain {path}")
    size = sdist.stat().st_size
    if size > MAX_SDIST_BYTES:
        problem(f"sdist is {size} bytes")
    print(f"  {len(inside)} files, {size / 1024:.0f} KiB", flush=True)


def _needed_libraries(wheel: Path, workdir: Path) -> list[str]:
    from elftools.elf.dynamic import DynamicSection  # auditwheel's own dependency
    from elftools.elf.elffile import ELFFile

    needed: list[str] = []
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith(".so"):
                path = Path(archive.extract(name, workdir))
                with path.open("rb") as f:
                    for section in ELFFile(f).iter_sections():
                        if isinstance(section, DynamicSection):
                            needed += [t.needed for t in section.iter_tags("DT_NEEDED")]
    return needed


def inspect_wheel(wheel: Path, workdir: Path) -> str:
    """Checks the wheel's contents, tag and libraries; returns its platform tag."""
    platform_tag = wheel.name[: -len(".whl")].split("-")[-1]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    if not any(re.fullmatch(r"monitored_ioloop/_native\..*(so|pyd)", n) for n in names):
        problem(f"{wheel.name}: no monitored_ioloop/_native extension")
    if "monitored_ioloop/py.typed" not in names:
        problem(f"{wheel.name}: no py.typed")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        problem(f"{wheel.name}: no LICENSE in dist-info")
    if any(n.startswith("tests/") or n.endswith(".pyc") for n in names):
        problem(f"{wheel.name}: carries tests or bytecode")
    if wheel.stat().st_size > MAX_WHEEL_BYTES:
        problem(f"{wheel.name}: {wheel.stat().st_size} bytes")
    if sys.platform == "linux":
        glibc = re.findall(r"manylinux_2_(\d+)_", platform_tag)
        if "manylinux2014" not in platform_tag and not (glibc and int(glibc[0]) <= 17):
            problem(f"{wheel.name}: platform tag {platform_tag} is newer than manylinux_2_17")
        shown = subprocess.run(
            [str(Path(sys.executable).parent / "auditwheel"), "show", str(wheel)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        consistent = re.search(r'platform tag:\s*"manylinux_2_(\d+)_', shown)
        if consistent is None or int(consistent.group(1)) > 17:
            problem(f"{wheel.name}: auditwheel show says:\n{shown}")
        else:
            print(f"  auditwheel: consistent with manylinux_2_{consistent.group(1)}")
        if "external shared libraries" in shown:
            problem(f"{wheel.name}: auditwheel finds libraries outside the policy:\n{shown}")
        needed = _needed_libraries(wheel, workdir)
        print("  needs:", " ".join(needed))
        for library in needed:
            if library not in ALLOWED_LIBS:
                problem(f"{wheel.name}: needs {library}")
    elif sys.platform == "darwin":
        if "macosx" not in platform_tag:
            problem(f"{wheel.name}: platform tag {platform_tag}")
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.endswith(".so"):
                    path = archive.extract(name, workdir)
                    linked = subprocess.run(
                        ["otool", "-L", path], capture_output=True, text=True, check=True
                    ).stdout.splitlines()[1:]
                    for line in linked:
                        library = line.split()[0]
                        if not library.startswith(("/usr/lib/", "/System/Library/")):
                            problem(f"{wheel.name}: links {library}")
    return platform_tag


def install_and_test(python: Interpreter, wheel: Path, workdir: Path) -> tuple[float, str]:
    """Returns (seconds `pip install` of the wheel took, pytest's summary line)."""
    venv = workdir / "venv"
    subprocess.run([python.path, "-m", "venv", str(venv)], check=True, env=clean_env())
    path = f"{venv / 'bin'}{os.pathsep}{bin_without_compilers(workdir / 'bin')}"
    drop = ("PYTHONPATH", "PYTHONHOME", "CC", "CXX", "CARGO", "RUSTC", "CARGO_HOME")
    env = {k: v for k, v in clean_env(PATH=path).items() if k not in drop}
    env["VIRTUAL_ENV"] = str(venv)
    vpy = str(venv / "bin" / "python")
    pip = [vpy, "-m", "pip", "--disable-pip-version-check", "-q"]

    found = subprocess.run(
        [vpy, "-c", "import shutil; print(*[t for t in ('cc', 'gcc', 'clang', 'cargo', "
         "'rustc') if shutil.which(t)])"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if found:
        problem(f"{python.tag}: the test venv still sees {found}")

    started = time.perf_counter()
    subprocess.run([*pip, "install", "--no-index", "--no-deps", str(wheel)], env=env, check=True)
    install_seconds = time.perf_counter() - started
    subprocess.run(
        [*pip, "install", "--only-binary=:all:", f"{wheel}[uvloop]", "pytest", "pytest-timeout"],
        env=env,
        check=True,
    )

    # The tests, away from the source tree: only the installed package can be imported.
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    (workdir / "pytest.ini").write_text("[pytest]\ntimeout_func_only = true\n")
    where = subprocess.run(
        [vpy, "-c", "import monitored_ioloop._native as n; print(n.__file__)"],
        cwd=workdir, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not where.startswith(str(venv)):
        problem(f"{python.tag}: tests would import {where}, not the installed wheel")
    ignores = [f"--ignore=tests/{name}" for name in SKIPPED_TESTS]
    tests = subprocess.run(
        [vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", *ignores],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = tests.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else "(no output)"
    if tests.returncode != 0:
        print(tests.stdout[-6000:], tests.stderr[-2000:])
        problem(f"{python.tag}: tests: {summary}")
    return install_seconds, summary


def main() -> None:
    ver = version()
    sdist = DIST / f"monitored_ioloop-{ver}.tar.gz"
    if sdist.exists():
        check_sdist(sdist, ver)
    else:
        problem(f"no {sdist.name} in dist/ (make wheels)")

    wheels = sorted(DIST.glob(f"monitored_ioloop-{ver}-*.whl"))
    rows = []
    for python in interpreters():
        matching = [w for w in wheels if f"-{python.tag}-{python.tag}-" in w.name]
        if not matching:
            problem(f"no {python.tag} wheel in dist/ for {python.path}")
            continue
        wheel = matching[0]
        print(f"\n== {wheel.name} ({python.path})", flush=True)
        with tempfile.TemporaryDirectory(prefix="check-wheel-") as tmp:
            platform_tag = inspect_wheel(wheel, Path(tmp))
            seconds, summary = install_and_test(python, wheel, Path(tmp))
        rows.append((python.tag, platform_tag, wheel.stat().st_size, seconds, summary))
        print(f"  pip install {seconds:.1f} s; tests: {summary}", flush=True)

    print(f"\n{'python':7} {'platform tag':48} {'size':>8} {'install':>8}  tests")
    for tag, platform_tag, size, seconds, summary in rows:
        print(f"{tag:7} {platform_tag:48} {size / 1024:6.0f} K {seconds:7.1f}s  {summary}")
    if problems:
        print(f"\n{len(problems)} problem(s):", *problems, sep="\n  ")
        sys.exit(1)
    print("\nall wheels and the sdist check out")


if __name__ == "__main__":
    main()
