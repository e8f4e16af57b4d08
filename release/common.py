"""What the release scripts share: the project's version (from Cargo.toml, the one place it is
written), the CPython interpreters to build and check wheels for, and a clean environment for
the commands they run."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
# The CPython minor versions we ship wheels for; 14 is built when an interpreter is found.
MINORS = range(9, 15)

# Variables the Makefile exports for `make build`/`make test` that must not leak into the
# interpreters and builds the release scripts start (they name .venv's Python and libclang).
_MAKEFILE_ENV = ("PYO3_PYTHON", "VIRTUAL_ENV", "LIBCLANG_PATH", "BINDGEN_EXTRA_CLANG_ARGS")


# Names that would let pip (or a test) compile something: hidden from a check's PATH.
_COMPILER = re.compile(
    r"(cc|c\+\+|cpp|c89|c99|tcc|ld|ld\..*|zig|gcc.*|g\+\+.*|.*-gcc(-[\d.]+)?|.*-g\+\+(-[\d.]+)?"
    r"|.*-cc|clang.*|cargo.*|rustc|rustdoc|rustup|rust-.*)"
)


class Interpreter(NamedTuple):
    path: str
    version: tuple[int, int]

    @property
    def tag(self) -> str:
        """The wheel's python tag, e.g. ``cp312``."""
        return f"cp{self.version[0]}{self.version[1]}"


def version() -> str:
    """The version in Cargo.toml's [package] table (maturin gives the same to the wheels)."""
    text = (ROOT / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.MULTILINE)
    if match is None:
        sys.exit("no version in Cargo.toml [package]")
    return match.group(1)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _MAKEFILE_ENV}
    env.update(extra)
    return env


def _describe(path: str) -> tuple[int, int] | None:
    """The interpreter's (major, minor) if it is a CPython with the GIL, else None."""
    probe = (
        "import sys, sysconfig; print(sys.implementation.name, *sys.version_info[:2], "
        "bool(sysconfig.get_config_var('Py_GIL_DISABLED')))"
    )
    try:
        out = subprocess.run(
            [path, "-c", probe], capture_output=True, text=True, check=True, env=clean_env()
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    if out[0] != "cpython" or out[3] == "True":
        return None
    return int(out[1]), int(out[2])


def _candidates(minor: int) -> list[str]:
    """pyenv's builds of 3.minor (newest patch first), then python3.minor on PATH."""
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = glob.glob(os.path.join(pyenv, "versions", f"3.{minor}.*", "bin", f"python3.{minor}"))
    found = [p for p in found if re.fullmatch(r"3\.\d+\.\d+", Path(p).parents[1].name)]
    found.sort(key=lambda p: int(Path(p).parents[1].name.split(".")[2]), reverse=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory, f"python3.{minor}")
        if os.access(candidate, os.X_OK) and "shims" not in directory:
            found.append(candidate)
    return found


def interpreters() -> list[Interpreter]:
    """The interpreters named in $PYTHONS (space-separated paths), or else one per supported
    minor version found on this machine."""
    named = os.environ.get("PYTHONS", "").split()
    result: list[Interpreter] = []
    if named:
        for path in named:
            described = _describe(path)
            if described is None:
                sys.exit(f"PYTHONS: {path} is not a CPython interpreter with the GIL")
            result.append(Interpreter(path, described))
        return result
    for minor in MINORS:
        for path in _candidates(minor):
            if _describe(path) == (3, minor):
                result.append(Interpreter(path, (3, minor)))
                break
    if not result:
        sys.exit("no CPython 3.9+ found (set PYTHONS to interpreter paths)")
    return result


def bin_without_compilers(directory: Path) -> Path:
    """A new directory of links to the system's programs, less compilers, linkers and Rust: a
    PATH for "a user's machine with no build tools"."""
    directory.mkdir()
    for source in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not os.path.isdir(source):
            continue
        for name in os.listdir(source):
            if not _COMPILER.fullmatch(name) and not (directory / name).exists():
                (directory / name).symlink_to(os.path.join(source, name))
    return directory


def run(cmd: list[str], **kwargs: object) -> None:
    """Runs a command, echoing it first; stops the script if it fails."""
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]
