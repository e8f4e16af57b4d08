"""The benchmark's HTTP workloads end to end, briefly: uvicorn serving the hello-world ASGI app
and the FastAPI JSON endpoint on the native loop in a server process, loaded by the native load
generator. Figures belong to the benchmark; this only checks that requests are served."""

from __future__ import annotations

import pytest
from monitored_ioloop.bench.__main__ import Echo, _measure_echo
from monitored_ioloop.bench.net import FASTAPI, HTTP, fastapi_available, http_available

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("style", [HTTP, FASTAPI])
def test_an_http_workload_is_served_on_the_native_loop(style: str) -> None:
    if not (fastapi_available() if style == FASTAPI else http_available()):
        pytest.skip(f"{style} is not installed")
    # Long enough for a first response on a busy machine (the app warms up on its first one).
    sample = _measure_echo("native", Echo(style, 0), 1.0)
    assert sample.rate > 0
    assert sample.p50 is not None and sample.p99 is not None and sample.p50 <= sample.p99
