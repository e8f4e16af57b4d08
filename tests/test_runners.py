"""The loop under the test runners people use, as the README's "Test runners" section shows:
pytest-asyncio's loop selection and anyio's pytest plugin (each run as a real pytest session in
a scratch project), ``anyio.run`` with a loop factory, and ``asyncio.Runner``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from integration_helpers import env_with
from monitored_ioloop.loop import Loop
from monitored_ioloop.monitored_uvloop import new_event_loop

pytestmark = pytest.mark.timeout(60)

CHECK = textwrap.dedent(
    """
    import asyncio
    from monitored_ioloop.loop import Loop

    def running_on_our_loop():
        return isinstance(asyncio.get_running_loop(), Loop)
    """
)


def run_pytest(project: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (project / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (project / "check.py").write_text(CHECK)
    for name, text in files.items():
        (project / name).write_text(textwrap.dedent(text))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project, capture_output=True, text=True, timeout=50, env=env_with(),
    )


# Newer pytest-asyncio releases declare a loop-factories hook; older ones (the last for Python 3.9
# among them) choose the loop through their policy fixture. The docs show both.
HOOK_CONFTEST = """
    from monitored_ioloop.monitored_uvloop import new_event_loop

    def pytest_asyncio_loop_factories(config, item):
        return {"monitored_ioloop": new_event_loop}
"""
POLICY_CONFTEST = """
    import pytest
    from monitored_ioloop.monitored_uvloop import EventLoopPolicy

    @pytest.fixture(scope="session")
    def event_loop_policy():
        return EventLoopPolicy()
"""


def test_pytest_asyncio_runs_tests_on_the_loop(tmp_path: Path) -> None:
    plugin = pytest.importorskip("pytest_asyncio.plugin")
    specs = getattr(plugin, "PytestAsyncioSpecs", None)
    has_hook = hasattr(specs, "pytest_asyncio_loop_factories")
    out = run_pytest(tmp_path, {
        "conftest.py": HOOK_CONFTEST if has_hook else POLICY_CONFTEST,
        "test_it.py": """
            import pytest
            from check import running_on_our_loop

            @pytest.mark.asyncio
            async def test_on_our_loop():
                assert running_on_our_loop()
        """,
    })
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


def test_anyio_pytest_plugin_runs_tests_on_the_loop(tmp_path: Path) -> None:
    pytest.importorskip("anyio")
    out = run_pytest(tmp_path, {
        "conftest.py": """
            import pytest
            from monitored_ioloop.monitored_uvloop import new_event_loop

            @pytest.fixture
            def anyio_backend():
                return "asyncio", {"loop_factory": new_event_loop}
        """,
        "test_it.py": """
            import pytest
            from check import running_on_our_loop

            @pytest.mark.anyio
            async def test_on_our_loop():
                assert running_on_our_loop()
        """,
    })
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


def test_anyio_run_with_a_loop_factory() -> None:
    anyio = pytest.importorskip("anyio")

    async def main() -> type:
        await anyio.sleep(0)
        return type(asyncio.get_running_loop())

    loop_type = anyio.run(main, backend="asyncio",
                          backend_options={"loop_factory": new_event_loop})
    assert issubclass(loop_type, Loop)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")
def test_asyncio_runner_with_new_event_loop() -> None:
    async def main() -> bool:
        await asyncio.sleep(0)
        return isinstance(asyncio.get_running_loop(), Loop)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:  # type: ignore[attr-defined]
        assert runner.run(main())
