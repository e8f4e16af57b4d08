"""PEP 517 build backend: maturin, with bindgen (libuv-sys2's build script) pointed at the
libclang wheel that pip installs into the build environment, so `pip install .` needs no
system libclang and no root."""

from __future__ import annotations

import os
import subprocess


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


_point_bindgen_at_libclang()

from maturin import (  # noqa: E402
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

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
