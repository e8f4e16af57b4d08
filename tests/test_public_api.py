"""The public names: those of the original package, uvloop-style entry points, and an import
that never touches uvloop."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import textwrap

import monitored_ioloop
import pytest
from monitored_ioloop import monitored_asyncio, monitored_uvloop, monitoring
from monitored_ioloop.loop import Loop

pytestmark = pytest.mark.timeout(30)

needs_runner = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")


@pytest.mark.parametrize(
    "module, name",
    [
        ("monitored_ioloop", "IoLoopMonitorState"),
        ("monitored_ioloop", "MonitoredAsyncIOEventLoopPolicy"),
        ("monitored_ioloop", "MonitoredUvloopEventLoopPolicy"),
        ("monitored_ioloop", "monitored_asyncio_loop_factory"),
        ("monitored_ioloop", "monitored_uvloop_loop_factory"),
        ("monitored_ioloop.loop", "Loop"),
        ("monitored_ioloop.monitoring", "IoLoopMonitorState"),
        ("monitored_ioloop.monitored_uvloop", "MonitoredUvloopEventLoop"),
        ("monitored_ioloop.monitored_uvloop", "MonitoredUvloopEventLoopPolicy"),
        ("monitored_ioloop.monitored_uvloop", "monitored_uvloop_loop_factory"),
        ("monitored_ioloop.monitored_uvloop", "new_event_loop"),
        ("monitored_ioloop.monitored_uvloop", "run"),
        ("monitored_ioloop.monitored_uvloop", "EventLoopPolicy"),
        ("monitored_ioloop.monitored_uvloop", "IoLoopMonitorState"),
        ("monitored_ioloop.monitored_asyncio", "MonitoredSelectorEventLoop"),
        ("monitored_ioloop.monitored_asyncio", "MonitoredAsyncIOEventLoopPolicy"),
        ("monitored_ioloop.monitored_asyncio", "monitored_asyncio_loop_factory"),
        ("monitored_ioloop.monitored_asyncio", "IoLoopMonitorState"),
    ],
)
def test_public_name_exists(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module", [monitored_ioloop, monitored_uvloop, monitored_asyncio])
def test_all_lists_only_names_that_exist(module: object) -> None:
    for name in module.__all__:  # type: ignore[attr-defined]
        assert hasattr(module, name), name


def test_the_monitor_state_is_one_class_everywhere() -> None:
    assert monitored_ioloop.IoLoopMonitorState is monitoring.IoLoopMonitorState
    assert monitored_uvloop.IoLoopMonitorState is monitoring.IoLoopMonitorState
    assert monitored_asyncio.IoLoopMonitorState is monitoring.IoLoopMonitorState


def test_importing_the_package_does_not_import_uvloop() -> None:
    code = textwrap.dedent(
        """
        import sys
        import monitored_ioloop
        import monitored_ioloop.monitored_uvloop
        import monitored_ioloop.monitored_asyncio
        print("uvloop" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_the_package_works_where_uvloop_cannot_be_imported() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["uvloop"] = None  # makes `import uvloop` raise ImportError
        from monitored_ioloop.monitored_uvloop import run

        async def main():
            return "ran"

        print(run(main()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "ran"


def test_monitored_uvloop_run_returns_the_result() -> None:
    async def main() -> int:
        await asyncio.sleep(0)
        return 42

    assert monitored_uvloop.run(main()) == 42


def test_monitored_uvloop_run_runs_on_the_native_loop_and_reports() -> None:
    reports = []

    async def main() -> bool:
        await asyncio.sleep(0)
        return isinstance(asyncio.get_running_loop(), Loop)

    assert monitored_uvloop.run(main(), monitor_callback=reports.append) is True
    assert reports


def test_monitored_uvloop_run_with_debug_runs_in_debug_mode() -> None:
    async def main() -> bool:
        return asyncio.get_running_loop().get_debug()

    assert monitored_uvloop.run(main(), debug=True) is True


def test_monitored_uvloop_run_raises_the_coroutines_exception() -> None:
    async def main() -> None:
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        monitored_uvloop.run(main())


def test_new_event_loop_returns_a_loop() -> None:
    event_loop = monitored_uvloop.new_event_loop()
    try:
        assert isinstance(event_loop, Loop)
        assert event_loop.get_monitor_callback() is None
    finally:
        event_loop.close()


def test_monitored_uvloop_event_loop_takes_a_monitor() -> None:
    reports = []
    event_loop = monitored_uvloop.MonitoredUvloopEventLoop(reports.append)
    try:
        event_loop.call_soon(event_loop.stop)
        event_loop.run_forever()
    finally:
        event_loop.close()
    assert len(reports) == 1


def test_event_loop_policy_is_the_monitored_uvloop_policy() -> None:
    assert monitored_uvloop.EventLoopPolicy is monitored_uvloop.MonitoredUvloopEventLoopPolicy


def test_uvloop_policy_new_event_loop_gives_a_monitored_native_loop() -> None:
    reports = []
    policy = monitored_uvloop.MonitoredUvloopEventLoopPolicy(reports.append)
    event_loop = policy.new_event_loop()
    try:
        assert isinstance(event_loop, Loop)
        event_loop.call_soon(event_loop.stop)
        event_loop.run_forever()
    finally:
        event_loop.close()
    assert len(reports) == 1


def test_asyncio_policy_new_event_loop_gives_a_monitored_selector_loop() -> None:
    reports = []
    policy = monitored_asyncio.MonitoredAsyncIOEventLoopPolicy(reports.append)
    event_loop = policy.new_event_loop()
    try:
        assert isinstance(event_loop, monitored_asyncio.MonitoredSelectorEventLoop)
        event_loop.call_soon(event_loop.stop)
        event_loop.run_forever()
    finally:
        event_loop.close()
    assert len(reports) == 1


@pytest.mark.parametrize(
    "factory_maker, loop_type",
    [
        (monitored_uvloop.monitored_uvloop_loop_factory, Loop),
        (
            monitored_asyncio.monitored_asyncio_loop_factory,
            monitored_asyncio.MonitoredSelectorEventLoop,
        ),
    ],
    ids=["uvloop", "asyncio"],
)
@needs_runner
def test_loop_factory_works_with_asyncio_runner(factory_maker: object, loop_type: type) -> None:
    reports = []

    async def main() -> type:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=factory_maker(reports.append)) as runner:  # type: ignore[operator]
        assert issubclass(runner.run(main()), loop_type)
    assert reports


def test_loop_factory_without_a_monitor_makes_an_unmonitored_loop() -> None:
    event_loop = monitored_uvloop.monitored_uvloop_loop_factory()()
    try:
        assert event_loop.get_monitor_callback() is None
    finally:
        event_loop.close()
