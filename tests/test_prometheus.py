"""Prometheus export: the collector's exposition, parsed with ``prometheus_client.parser``,
matches the loop's snapshot; scraped over HTTP from a uvicorn-served app on the loop; one
endpoint per worker under ``uvicorn --workers 2``, each worker counted once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("uvicorn")

from integration_helpers import (  # noqa: E402
    LOCALHOST,
    env_with,
    free_port,
    http_get,
    start_uvicorn,
    wait_for,
)
from monitored_ioloop import prometheus  # noqa: E402
from monitored_ioloop.monitored_uvloop import monitored_uvloop_loop_factory  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def parse(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families: dict[str, Any], name: str, family: str = "") -> list[Any]:
    return [s for s in families[family or name].samples if s.name == name]


def blocking_step() -> None:
    time.sleep(0.12)


def run_some_work(loop: Any) -> None:
    async def work() -> None:
        await asyncio.gather(*(asyncio.sleep(0.001 * (i % 5)) for i in range(50)))
        loop.call_soon(blocking_step)
        await asyncio.sleep(0.2)

    loop.run_until_complete(work())


def assert_histogram_matches(families: dict[str, Any], name: str, hist: Any) -> None:
    buckets = samples(families, name + "_bucket", name)
    assert buckets, name
    for sample in buckets:
        le = float(sample.labels["le"])
        expected = hist.count if le == float("inf") else hist.cumulative_count(le)
        assert sample.value == expected, (name, le)
    assert samples(families, name + "_count", name)[0].value == hist.count
    assert samples(families, name + "_sum", name)[0].value == pytest.approx(hist.sum, rel=1e-9)


def test_exposition_matches_the_snapshot() -> None:
    loop = monitored_uvloop_loop_factory(slow_callback_threshold=0.1)()
    try:
        run_some_work(loop)
        registry = CollectorRegistry()
        prometheus.register(registry, loop)
        families = parse(generate_latest(registry).decode())
        snap = loop.monitor_snapshot()
    finally:
        loop.close()
    assert_histogram_matches(families, "monitored_ioloop_callback_wall_time_seconds",
                             snap.wall_time)
    assert_histogram_matches(families, "monitored_ioloop_loop_lag_seconds", snap.loop_lag)
    by_kind = {s.labels["kind"]: s.value
               for s in samples(families, "monitored_ioloop_dispatches_total",
                                "monitored_ioloop_dispatches")}
    assert by_kind == {k: v.dispatches for k, v in snap.by_kind.items()}
    slow = {s.labels["callback"]: s.value
            for s in samples(families, "monitored_ioloop_slow_callbacks_by_name_total",
                             "monitored_ioloop_slow_callbacks_by_name")}
    assert slow.get("blocking_step") == 1
    assert samples(families, "monitored_ioloop_pending_handles")[0].value == snap.pending_handles


def test_register_without_a_loop_outside_one_says_so() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        prometheus.register(CollectorRegistry())


def test_register_refuses_a_loop_that_is_not_ours() -> None:
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError):
            prometheus.register(CollectorRegistry(), other)
    finally:
        other.close()


def test_task_numbers_are_masked_in_labels() -> None:
    assert prometheus.bounded_callback_name("Task-123 (handler)") == "Task-_ (handler)"


def test_scrape_over_http_of_a_uvicorn_app_on_the_loop() -> None:
    """uvicorn serves an app on the loop, in this process; the endpoint serves the loop's
    metrics over HTTP; once the server stopped, the scrape equals the snapshot exactly."""
    import httpx
    import uvicorn
    from net_apps.asgi_app import app

    loop = monitored_uvloop_loop_factory()()
    port = free_port()
    config = uvicorn.Config(app, host=LOCALHOST, port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    endpoint = prometheus.start_http_server(0, loop=loop)

    async def serve_and_query() -> None:
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            for _ in range(5):
                assert (await client.get(f"http://{LOCALHOST}:{port}/")).status_code == 200
        live = await loop.run_in_executor(None, http_get, endpoint.url + "/metrics")
        assert "monitored_ioloop_dispatches_total" in live.decode()
        server.should_exit = True
        await serving

    try:
        loop.run_until_complete(serve_and_query())
        text = http_get(endpoint.url + "/metrics").decode()
        snapshot_json = json.loads(http_get(endpoint.url + "/monitored_ioloop.json"))
        snap = loop.monitor_snapshot()
    finally:
        endpoint.close()
        loop.close()
    families = parse(text)
    assert_histogram_matches(families, "monitored_ioloop_callback_wall_time_seconds",
                             snap.wall_time)
    assert_histogram_matches(families, "monitored_ioloop_loop_lag_seconds", snap.loop_lag)
    assert snapshot_json["dispatches"] == snap.dispatches
    expected = snap.to_dict()
    for doc in (snapshot_json, expected):
        doc.pop("timestamp")  # when each was taken
    assert snapshot_json == json.loads(json.dumps(expected))


def scrape_worker(url: str) -> tuple[dict[str, str], float]:
    """One worker endpoint: its labels and its dispatch count."""
    families = parse(wait_for(url + "/metrics").decode())
    (total,) = samples(families, "monitored_ioloop_iterations_total",
                       "monitored_ioloop_iterations")
    dispatched = samples(families, "monitored_ioloop_dispatches_total",
                         "monitored_ioloop_dispatches")
    labels = {k: v for k, v in total.labels.items()}
    assert all(s.labels["pid"] == labels["pid"] for s in dispatched)
    return labels, sum(s.value for s in dispatched)


def scrape_until_dispatched(url: str, timeout: float = 20.0) -> tuple[dict[str, str], float]:
    deadline = time.monotonic() + timeout
    while True:
        labels, dispatched = scrape_worker(url)
        if dispatched > 0 or time.monotonic() > deadline:
            return labels, dispatched
        time.sleep(0.1)


def test_env_endpoint_of_a_single_uvicorn_worker(tmp_path: Path) -> None:
    port = free_port()
    server = start_uvicorn("net_apps.asgi_app:app", tmp_path / "uvicorn.log",
                           env_with(MONITORED_IOLOOP_PROMETHEUS_PORT=str(port)))
    try:
        http_get(server.url + "/")
        labels, dispatched = scrape_worker(f"http://{LOCALHOST}:{port}")
        doc = json.loads(http_get(f"http://{LOCALHOST}:{port}/monitored_ioloop.json"))
    finally:
        server.stop()
    assert labels["worker"] == "0"
    assert labels["pid"] == str(server.process.pid)
    assert dispatched > 0 and doc["dispatches"] >= dispatched


def test_two_workers_each_serve_their_own_loop_once(tmp_path: Path) -> None:
    port = free_port(2)
    server = start_uvicorn("net_apps.asgi_app:app", tmp_path / "uvicorn.log",
                           env_with(MONITORED_IOLOOP_PROMETHEUS_PORT=str(port)), workers=2)
    try:
        for _ in range(10):
            http_get(server.url + "/")
        # A worker's endpoint is up as soon as its loop exists; on a busy machine the worker
        # that got no request may still be starting its loop: wait until it has run something.
        scraped = [scrape_until_dispatched(f"http://{LOCALHOST}:{port + i}") for i in range(2)]
    finally:
        server.stop()
    workers = sorted(labels["worker"] for labels, _ in scraped)
    pids = {labels["pid"] for labels, _ in scraped}
    assert workers == ["0", "1"]
    assert len(pids) == 2 and str(server.process.pid) not in pids  # the supervisor serves none
    assert all(dispatched > 0 for _, dispatched in scraped)


def block_the_loop() -> None:
    time.sleep(0.3)  # the line the watchdog finds


def test_watchdog_reports_name_the_innermost_frame() -> None:
    """A kept report shows as its callback name and the file:line the loop thread was
    executing when reported."""
    loop = monitored_uvloop_loop_factory(watchdog_threshold=0.05)()
    try:
        loop.call_soon(block_the_loop)
        loop.call_soon(loop.stop)
        loop.run_forever()
        registry = CollectorRegistry()
        prometheus.register(registry, loop)
        families = parse(generate_latest(registry).decode())
        snap = loop.monitor_snapshot()
    finally:
        loop.close()
    line = block_the_loop.__code__.co_firstlineno + 1
    (sample,) = families["monitored_ioloop_watchdog_blocked_seconds"].samples
    assert sample.labels == {"callback": "block_the_loop", "location": f"{__file__}:{line}"}
    assert sample.value == max(r.blocked_for for r in snap.watchdog_reports)
    assert samples(families, "monitored_ioloop_watchdog_reports_total",
                   "monitored_ioloop_watchdog_reports")[0].value == snap.watchdog_reports_total == 1
