"""PEP 517 build backend: maturin, with bindgen (libuv-sys2's build script) pointed at the
libclang wheel that pip installs into the build environment, so `pip install .` needs no
system libclang and no root. A build without Rust or a C compiler stops at once with one short
message (rather than maturin fetching a toolchain, or a page of cargo output)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any, Callable, TypeVar

_Hook = TypeVar("_Hook", bound=Callable[..., Any])

_MISSING_TOOLCHAIN = """\
monitored_ioloop: building from source needs {missing}: not found on PATH.
pip builds from source when no wheel fits this Python and platform (wheels: CPython 3.9-3.13
on Linux x86_64/aarch64 with glibc 2.17+, macOS x86_64/arm64).
Install Rust (cargo) from https://rustup.rs or the system's packages, and a C compiler
(gcc or clang; libuv is built from source), then retry; or use a Python that has a wheel."""


def _point_bindgen_at_libclang() -> None:
    if "LIBCLANG_PATH" not in os.environ:
        try:
            import clang
        except ImportError:
            pass
        else:
            os.environ["LIBCLANG_PATH"] = os.path.join(os.path.dirname(clang.__file__), "native")
    if "BINDGEN_EXTRA_CLANG_ARGS" not in os.environ:
        # The wheel has no compiler headers (stddef.h); the C compiler's are as good.
        try:
            include = subprocess.run(
                ["cc", "-print-file-name=include"], capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            include = ""
        if include and include != "include":
            os.environ["BINDGEN_EXTRA_CLANG_ARGS"] = f"-I{include}"


def _missing_tools(compiler: bool) -> list[str]:
    missing = []
    if shutil.which(os.environ.get("CARGO", "cargo")) is None:
        missing.append("Rust (cargo)")
    compilers = [os.environ.get("CC", ""), "cc", "gcc", "clang"]
    if compiler and not any(c and shutil.which(c.split()[0]) for c in compilers):
        missing.append("a C compiler")
    return missing


def _needs_toolchain(hook: _Hook, compiler: bool = True) -> _Hook:
    """Runs the maturin hook only when cargo (and, to build, a C compiler) are there; otherwise
    exits with _MISSING_TOOLCHAIN (pip shows it as the build's whole output)."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        missing = _missing_tools(compiler)
        if missing:
            sys.exit(_MISSING_TOOLCHAIN.format(missing=" and ".join(missing)))
        return hook(*args, **kwargs)

    checked.__name__ = hook.__name__
    checked.__doc__ = hook.__doc__
    return checked  # type: ignore[return-value]


_point_bindgen_at_libclang()

import maturin  # noqa: E402

build_editable = _needs_toolchain(maturin.build_editable)
# An sdist only lists the Cargo workspace's files: cargo, no compiler.
build_sdist = _needs_toolchain(maturin.build_sdist, compiler=False)
build_wheel = _needs_toolchain(maturin.build_wheel)
get_requires_for_build_editable = _needs_toolchain(maturin.get_requires_for_build_editable)
get_requires_for_build_sdist = _needs_toolchain(
    maturin.get_requires_for_build_sdist, compiler=False
)
get_requires_for_build_wheel = _needs_toolchain(maturin.get_requires_for_build_wheel)
prepare_metadata_for_build_editable = _needs_toolchain(maturin.prepare_metadata_for_build_editable)
prepare_metadata_for_build_wheel = _needs_toolchain(maturin.prepare_metadata_for_build_wheel)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]
