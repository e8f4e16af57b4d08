"""The original package 0.0.23's public names, importable with the same meaning, and
``import monitored_ioloop`` importing none of the optional integrations' packages."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import subprocess
import sys
import textwrap

import pytest
from monitored_ioloop.log_format import JsonFormatter

pytestmark = pytest.mark.timeout(30)

OPTIONAL = ("prometheus_client", "opentelemetry", "starlette", "fastapi", "matplotlib",
            "gunicorn", "uvicorn", "uvloop", "http.server")


@pytest.mark.parametrize(
    "module, name",
    [
        ("monitored_ioloop.exceptions", "NoUvLoopInstalled"),
        ("monitored_ioloop.formatting_utils", "pretty_format_handle"),
        ("monitored_ioloop.formatting_utils", "pretty_callback_name"),
        ("monitored_ioloop.helpers.fastapi", "MonitoredIOLoopMiddleware"),
        ("monitored_ioloop.helpers.fastapi", "mask_numeric_segments"),
        ("monitored_ioloop.helpers.fastapi", "default_callback_pretty_name"),
        ("monitored_ioloop.helpers.fastapi", "AsgiMiddlewareType"),
        ("monitored_ioloop.monitoring", "IoLoopInnerState"),
        ("monitored_ioloop.monitoring", "MonitoredCallbackWrapper"),
        ("monitored_ioloop.monitoring", "wrap_callback_with_monitoring"),
        ("monitored_ioloop.monitored_ioloop_base", "BaseMonitoredEventLoopPolicy"),
    ],
)
def test_original_name_exists(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


def test_no_uvloop_installed_is_an_import_error() -> None:
    from monitored_ioloop.exceptions import NoUvLoopInstalled

    error = NoUvLoopInstalled()
    assert isinstance(error, ImportError)
    assert "monitored_ioloop[uvloop]" in str(error)


def test_wrapped_callback_reports_like_the_original() -> None:
    from monitored_ioloop.monitoring import IoLoopInnerState, wrap_callback_with_monitoring

    reports = []
    state = IoLoopInnerState(handles_count=0)

    def callback(x: int) -> int:
        return x * 2

    wrapped = wrap_callback_with_monitoring(callback, reports.append, state)
    assert state.handles_count == 1
    assert wrapped.__name__ == "callback"
    assert wrapped(21) == 42
    assert state.handles_count == 0
    (report,) = reports
    assert report.callback_pretty_name.endswith("<locals>.callback")
    assert report.loop_handles_count == 0 and report.callback_wall_time >= 0


def test_pretty_callback_name_of_a_task_step() -> None:
    from monitored_ioloop.formatting_utils import pretty_callback_name, pretty_format_handle

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        handle = asyncio.get_running_loop().call_soon(task.get_name)
        assert pretty_format_handle(handle) == repr(task)  # a task's callback: the task
        handle.cancel()
        other = asyncio.get_running_loop().call_soon(print)
        assert pretty_format_handle(other) == repr(other)
        other.cancel()
        assert pretty_callback_name(main) == main.__qualname__

    asyncio.run(main())


def test_import_monitored_ioloop_imports_nothing_optional() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import monitored_ioloop, monitored_ioloop.monitored_uvloop, monitored_ioloop.config
        import monitored_ioloop.helpers.fastapi, monitored_ioloop.log_format
        print([m for m in {OPTIONAL!r} if m in sys.modules])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_json_formatter_writes_the_extra_fields() -> None:
    record = logging.LogRecord("monitored_ioloop.slow_callbacks", logging.WARNING, "x.py", 1,
                               "Slow callback %s took %.3f seconds at %s",
                               ("Task-1 (h)", 0.2, "app.py:3-5"), None)
    record.callback_name = "Task-1 (h)"
    record.wall_time = 0.2
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "Slow callback Task-1 (h) took 0.200 seconds at app.py:3-5"
    assert entry["callback_name"] == "Task-1 (h)" and entry["wall_time"] == 0.2
    assert entry["logger"] == "monitored_ioloop.slow_callbacks" and entry["level"] == "WARNING"
