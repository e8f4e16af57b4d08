"""Shared by the integration tests: free ports, uvicorn started as users start it (a subprocess
with ``--loop``), waiting for an HTTP endpoint, and a Prometheus scrape parsed with
``prometheus_client.parser``."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

LOCALHOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent
LOOP_FACTORY = "monitored_ioloop.monitored_uvloop:new_event_loop"


#: Every port `free_port` has handed out in this process: the kernel may offer a probe the
#: port it offered the one before, and a test that asks twice (uvicorn's port, then its metrics
#: port) must get two that differ, or its second server finds the first bound there.
_GIVEN: set[int] = set()


def free_port(count: int = 1) -> int:
    """A port p such that p .. p + count - 1 were all free a moment ago, none of them handed
    out before in this process."""
    # SO_REUSEADDR, as the servers that take these ports bind: a port an earlier server left in
    # TIME_WAIT is free for them.
    for _ in range(100):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((LOCALHOST, 0))
            base = int(probe.getsockname()[1])
        ports = set(range(base, base + count))
        if base + count > 65535 or ports & _GIVEN:
            continue
        try:
            for offset in range(1, count):
                with socket.socket() as other:
                    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    other.bind((LOCALHOST, base + offset))
        except OSError:
            continue
        _GIVEN.update(ports)
        return base
    raise RuntimeError("no run of free ports")


def env_with(**extra: str) -> dict[str, str]:
    """The environment for a child: no ``MONITORED_IOLOOP_*`` from ours, the tests folder and
    the repository importable (test apps, examples), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITORED_IOLOOP_")}
    paths = [str(TESTS_DIR), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def wait_for(url: str, timeout: float = 20.0, process: Optional[subprocess.Popen[Any]] = None,
             ) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(url, timeout=2.0)
        except (OSError, urllib.error.URLError):
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode})") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclasses.dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_uvicorn(app: str, log_path: Path, env: dict[str, str], workers: int = 1,
                  ready_path: str = "/") -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", LOCALHOST, "--port", str(port),
           "--loop", LOOP_FACTORY, "--log-level", "warning"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    log = log_path.open("wb")
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(process, port, log_path)
    try:
        wait_for(server.url + ready_path, process=process)
    except BaseException:
        server.stop()
        raise RuntimeError(f"uvicorn did not start:\n{server.log()}") from None
    return server


__all__ = ["LOOP_FACTORY", "env_with", "free_port", "http_get", "start_uvicorn",
           "wait_for"]
