"""The native monitoring core as a user reads it: snapshots (histograms, utilisation, pending
work, deltas), slow callbacks attributed to file:line, busy time per callable, the monitor
callback's minimum wall time, options and misuse."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import random
import threading
import time
from array import array
from typing import Any

import pytest
from monitored_ioloop import _native
from monitored_ioloop.loop import Loop
from monitored_ioloop.monitored_uvloop import (
    MonitoredUvloopEventLoopPolicy,
    monitored_uvloop_loop_factory,
)
from monitored_ioloop.monitoring import (
    KINDS,
    Histogram,
    IoLoopMonitorState,
    LoopSnapshot,
    SlowCallback,
    snapshot,
)

pytestmark = pytest.mark.timeout(60)

#: The documented bound on a percentile's relative error (bucket midpoint).
RELATIVE_ERROR = 1 / 64


def busy_wait(seconds: float) -> None:
    # A little longer than asked: the loop times dispatches in TSC ticks calibrated against
    # the monotonic clock, which may count a few microseconds short over tens of ms.
    end = time.perf_counter() + seconds * 1.001
    while time.perf_counter() < end:
        pass


def native_histogram(values_ns: list[int]) -> Histogram:
    return Histogram._from_raw(_native._histogram_of(values_ns))


def exact_percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1] * 1e-9


# -- histograms --------------------------------------------------------------------------------


def test_values_land_in_buckets_whose_bounds_hold_them() -> None:
    for value in [0, 1, 31, 32, 33, 63, 64, 1000, 1023, 1024, 123_456, 10**9, 10**11]:
        h = native_histogram([value])
        buckets = h.buckets()
        # The value's bucket is the last one (trimmed after it) and it holds the value.
        upper, cumulative = buckets[-1]
        lower = buckets[-2][0] if len(buckets) > 1 else 0.0
        assert cumulative == 1
        assert lower <= value * 1e-9 < upper, (value, lower, upper)


def test_bucket_widths_keep_the_documented_error() -> None:
    bounds = [upper for upper, _ in native_histogram([10**11]).buckets()]
    for lower, upper in zip(bounds[32:], bounds[33:]):
        assert (upper - lower) / lower <= 1 / 32 + 1e-12


@pytest.mark.parametrize("distribution", ["uniform", "lognormal", "bimodal"])
def test_percentiles_are_within_the_documented_error(distribution: str) -> None:
    rng = random.Random(7)
    if distribution == "uniform":
        values = [rng.randrange(1_000, 10_000_000) for _ in range(20_000)]
    elif distribution == "lognormal":
        values = [int(rng.lognormvariate(11, 2)) + 1_000 for _ in range(20_000)]
    else:
        values = [rng.randrange(5_000, 6_000) for _ in range(15_000)] + [
            rng.randrange(200_000_000, 300_000_000) for _ in range(5_000)
        ]
    h = native_histogram(values)
    assert h.count == len(values)
    assert h.sum == pytest.approx(sum(values) * 1e-9)
    assert h.max == max(values) * 1e-9
    assert h.min == min(values) * 1e-9
    for q in (1, 25, 50, 75, 90, 99, 99.9):
        expected = exact_percentile(values, q)
        assert h.percentile(q) == pytest.approx(expected, rel=RELATIVE_ERROR), q
    assert h.percentile(0) == h.min
    assert h.percentile(100) == h.max


def test_an_empty_histogram_reads_zero() -> None:
    h = native_histogram([])
    assert (h.count, h.sum, h.max, h.percentile(50), h.buckets()) == (0, 0.0, 0.0, 0.0, [])


def test_percentile_rejects_q_outside_0_to_100() -> None:
    h = native_histogram([1000])
    with pytest.raises(ValueError):
        h.percentile(101)
    with pytest.raises(ValueError):
        h.percentile(-1)
    with pytest.raises(TypeError):
        h.percentile("50")  # type: ignore[arg-type]


def test_cumulative_count_maps_onto_coarser_bounds() -> None:
    values = [500] * 3 + [5_000] * 4 + [50_000_000] * 5
    h = native_histogram(values)
    assert h.cumulative_count(1e-6) == 3
    assert h.cumulative_count(1e-5) == 7
    assert h.cumulative_count(1.0) == 12
    assert h.cumulative_count(1e-9) == 0


def test_histogram_since_subtracts_the_earlier_counts() -> None:
    first = [1_000] * 10 + [1_000_000] * 2
    later = first + [1_000] * 5 + [50_000_000] * 3
    delta = native_histogram(later).since(native_histogram(first))
    assert delta.count == 8
    assert delta.sum == pytest.approx((5 * 1_000 + 3 * 50_000_000) * 1e-9)
    assert delta.cumulative_count(1e-5) == 5
    assert delta.percentile(100) == pytest.approx(0.05, rel=RELATIVE_ERROR)


# -- snapshots ---------------------------------------------------------------------------------


def run_callbacks(loop: Loop, *callbacks: Any) -> None:
    for cb in callbacks:
        loop.call_soon(cb)
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_snapshot_counts_dispatches_by_kind(loop: Loop) -> None:
    done = threading.Event()

    async def main() -> None:
        loop.call_soon(lambda: None)
        loop.call_later(0.001, lambda: None)
        threading.Thread(target=lambda: (loop.call_soon_threadsafe(done.set))).start()
        await asyncio.sleep(0.01)
        await loop.run_in_executor(None, done.wait)
        reader, writer = await asyncio.open_connection(*server_address)
        writer.write(b"x")
        await reader.readexactly(1)
        writer.close()
        await writer.wait_closed()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(1))
        await writer.drain()
        writer.close()

    server = loop.run_until_complete(asyncio.start_server(echo, "127.0.0.1", 0))
    server_address = server.sockets[0].getsockname()[:2]
    loop.run_until_complete(main())
    server.close()
    loop.run_until_complete(server.wait_closed())
    snap = loop.monitor_snapshot()
    assert set(snap.by_kind) == set(KINDS)
    for kind in ("callback", "timer", "io", "threadsafe"):
        assert snap.by_kind[kind].dispatches > 0, kind
        assert snap.by_kind[kind].wall_time.count == snap.by_kind[kind].dispatches
    assert snap.dispatches == sum(k.dispatches for k in snap.by_kind.values())
    assert snap.wall_time.count == snap.dispatches
    assert snap.loop_lag.count == snap.dispatches
    assert snap.busy_time == pytest.approx(snap.wall_time.sum)


def test_signal_handlers_count_as_signal_dispatches(loop: Loop) -> None:
    import os
    import signal

    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, 1)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    loop.remove_signal_handler(signal.SIGUSR1)
    assert got == [1]
    assert loop.monitor_snapshot().by_kind["signal"].dispatches == 1


def test_snapshot_counts_errors(loop: Loop) -> None:
    loop.set_exception_handler(lambda loop, context: None)

    def fail() -> None:
        raise ValueError("boom")

    run_callbacks(loop, fail, fail, lambda: None)
    snap = loop.monitor_snapshot()
    assert snap.errors == 2
    assert snap.by_kind["callback"].errors == 2


def test_utilization_is_near_zero_for_a_sleeping_loop(loop: Loop) -> None:
    async def sleeper() -> None:
        for _ in range(5):
            await asyncio.sleep(0.04)

    loop.run_until_complete(sleeper())
    snap = loop.monitor_snapshot()
    assert snap.idle_time >= 0.15
    assert snap.utilization < 0.1


def test_utilization_is_near_one_for_a_spinning_loop(loop: Loop) -> None:
    run_callbacks(loop, *[lambda: busy_wait(0.02)] * 10)
    snap = loop.monitor_snapshot()
    assert snap.busy_time >= 0.2
    assert snap.utilization > 0.9


def test_since_gives_the_window_between_two_snapshots(loop: Loop) -> None:
    async def sleeper() -> None:
        await asyncio.sleep(0.1)

    loop.run_until_complete(sleeper())
    first = loop.monitor_snapshot()
    run_callbacks(loop, *[lambda: busy_wait(0.01)] * 10)
    second = loop.monitor_snapshot()
    window = second.since(first)
    assert window.dispatches == second.dispatches - first.dispatches
    assert window.wall_time.count == window.dispatches
    assert window.busy_time == pytest.approx(second.busy_time - first.busy_time)
    # The window spun; the loop's whole life slept most of the time.
    assert window.utilization > 0.9
    assert first.utilization < 0.5
    assert window.iterations == second.iterations - first.iterations
    by_kind = window.by_kind["callback"]
    assert by_kind.dispatches == (
        second.by_kind["callback"].dispatches - first.by_kind["callback"].dispatches
    )
    with pytest.raises(ValueError):
        first.since(second)
    with pytest.raises(TypeError):
        second.since(object())  # type: ignore[arg-type]


def test_snapshot_inside_a_callback_sees_the_dispatches_before_it(loop: Loop) -> None:
    seen: list[LoopSnapshot] = []
    run_callbacks(loop, lambda: None, lambda: None, lambda: seen.append(loop.monitor_snapshot()))
    assert seen[0].dispatches == 2


def test_snapshot_from_another_thread_while_the_loop_runs(loop: Loop) -> None:
    taken: list[LoopSnapshot] = []

    def reader() -> None:
        for _ in range(50):
            taken.append(loop.monitor_snapshot())
            time.sleep(0.001)
        loop.call_soon_threadsafe(loop.stop)

    def chain() -> None:
        if loop.is_running():
            loop.call_soon(chain)

    loop.call_soon(chain)
    thread = threading.Thread(target=reader)
    thread.start()
    loop.run_forever()
    thread.join()
    counts = [s.dispatches for s in taken]
    assert counts == sorted(counts)
    assert counts[-1] > counts[0]
    for s in taken:
        assert s.wall_time.count == s.dispatches


def test_snapshot_counts_pending_work(loop: Loop) -> None:
    import socket

    a, b = socket.socketpair()
    try:
        loop.call_soon(lambda: None)
        cancelled = loop.call_soon(lambda: None)
        cancelled.cancel()
        loop.call_later(10, lambda: None)
        loop.call_later(10, lambda: None).cancel()
        loop.add_reader(a.fileno(), lambda: None)
        snap = loop.monitor_snapshot()
        assert (snap.pending_handles, snap.pending_timers, snap.io_watchers) == (1, 1, 1)
        loop.remove_reader(a.fileno())
        assert loop.monitor_snapshot().io_watchers == 0
    finally:
        a.close()
        b.close()


def test_snapshot_counts_open_transports(loop: Loop) -> None:
    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Closes its side once the client has: 3.12+ servers wait for their connections.
        await reader.read()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(until_eof, "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        await asyncio.sleep(0.01)
        assert loop.monitor_snapshot().open_transports == 2
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    before = loop.monitor_snapshot().open_transports
    loop.run_until_complete(main())
    loop.run_until_complete(asyncio.sleep(0.01))
    assert before == 0


def test_snapshot_of_a_closed_loop_keeps_the_final_figures(loop: Loop) -> None:
    run_callbacks(loop, lambda: None)
    before = loop.monitor_snapshot()
    loop.close()
    after = loop.monitor_snapshot()
    assert after.dispatches == before.dispatches
    assert (after.pending_handles, after.pending_timers, after.io_watchers) == (0, 0, 0)


def test_snapshot_function_reads_the_running_loop(loop: Loop) -> None:
    async def main() -> LoopSnapshot:
        return snapshot()

    assert isinstance(loop.run_until_complete(main()), LoopSnapshot)
    assert isinstance(snapshot(loop), LoopSnapshot)
    with pytest.raises(RuntimeError):
        snapshot()
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError):
            snapshot(other)
    finally:
        other.close()


def test_snapshot_to_dict_is_json(loop: Loop) -> None:
    run_callbacks(loop, lambda: busy_wait(0.11))
    data = json.loads(json.dumps(loop.monitor_snapshot().to_dict()))
    assert data["dispatches"] == 2
    assert data["wall_time"]["count"] == 2
    assert data["wall_time"]["buckets"][-1][1] == 2
    assert data["slow_callbacks"][0]["wall_time"] >= 0.11
    assert set(data["by_kind"]) == set(KINDS)


# -- slow callbacks ----------------------------------------------------------------------------


async def sleepy_handler() -> None:
    await asyncio.sleep(0)
    time.sleep(0.15)  # the slow line
    await asyncio.sleep(0)


SLOW_LINE = inspect.getsource(sleepy_handler).splitlines().index(
    "    time.sleep(0.15)  # the slow line"
) + sleepy_handler.__code__.co_firstlineno


def span_of(location: str) -> tuple[str, int, int]:
    path, _, lines = location.rpartition(":")
    first, _, last = lines.partition("-")
    return path, int(first), int(last or first)


@pytest.mark.parametrize("runs", [1, 3])
def test_a_slow_task_step_is_recorded_with_task_coroutine_and_line_span(
    loop: Loop, runs: int
) -> None:
    async def main() -> None:
        for _ in range(runs):
            await asyncio.create_task(sleepy_handler(), name="request-42")

    loop.run_until_complete(main())
    slow = loop.monitor_snapshot().slow_callbacks
    assert len(slow) == runs
    for record in slow:
        assert isinstance(record, SlowCallback)
        assert record.kind == "callback"
        assert record.task_name == "request-42"
        assert record.coroutine == "sleepy_handler"
        assert record.name == "request-42 (sleepy_handler)"
        assert record.wall_time >= 0.15
        path, first, last = span_of(record.location)
        assert path == __file__
        assert first <= SLOW_LINE <= last, record.location
    # Once a coroutine has been slow, its later steps note where they resumed: the span is
    # then exactly from the await before the slow line to the await after it.
    if runs > 1:
        assert span_of(slow[-1].location)[1:] == (SLOW_LINE - 1, SLOW_LINE + 1)


async def app_handler() -> None:
    await asyncio.sleep(0)
    time.sleep(0.15)  # the app's slow line
    await asyncio.sleep(0)


async def server_request_cycle() -> None:
    """Like a web server's per-request coroutine: the task runs this, the app's code is deeper."""
    await app_handler()


APP_SLOW_LINE = inspect.getsource(app_handler).splitlines().index(
    "    time.sleep(0.15)  # the app's slow line"
) + app_handler.__code__.co_firstlineno


@pytest.mark.parametrize("runs", [1, 2])
def test_a_slow_step_deep_in_an_await_chain_points_at_the_deepest_frame(
    loop: Loop, runs: int
) -> None:
    async def main() -> None:
        for _ in range(runs):
            await asyncio.create_task(server_request_cycle())

    loop.run_until_complete(main())
    slow = loop.monitor_snapshot().slow_callbacks
    assert len(slow) == runs
    for record in slow:
        assert record.coroutine == "server_request_cycle"
        path, first, last = span_of(record.location)
        assert path == __file__
        assert app_handler.__code__.co_firstlineno <= first <= APP_SLOW_LINE <= last
    assert span_of(slow[-1].location)[1:] == (
        (APP_SLOW_LINE - 1, APP_SLOW_LINE + 1) if runs > 1 else span_of(slow[-1].location)[1:]
    )


def test_a_slow_plain_callback_is_recorded_at_its_definition(loop: Loop) -> None:
    def slow_callback() -> None:
        busy_wait(0.11)

    run_callbacks(loop, slow_callback)
    (record,) = loop.monitor_snapshot().slow_callbacks
    assert record.name.endswith("slow_callback")
    assert record.task_name is None and record.coroutine is None
    assert record.location == f"{__file__}:{slow_callback.__code__.co_firstlineno}"
    assert record.started_at <= loop.time()


def test_fast_callbacks_are_not_recorded(loop: Loop) -> None:
    run_callbacks(loop, *[lambda: None] * 100)
    snap = loop.monitor_snapshot()
    assert snap.slow_callbacks == () and snap.slow_callbacks_total == 0


def test_the_slow_callback_ring_stays_bounded(loop: Loop) -> None:
    loop.slow_callback_threshold = 0.0
    loop.slow_callback_capacity = 10
    run_callbacks(loop, *[lambda: None] * 50)
    snap = loop.monitor_snapshot()
    assert len(snap.slow_callbacks) == 10
    assert snap.slow_callbacks_total == 51
    assert sum(snap.slow_callback_counts.values()) == 51


def test_slow_callbacks_are_counted_per_name(loop: Loop) -> None:
    loop.slow_callback_threshold = 0.001

    def a() -> None:
        busy_wait(0.002)

    def b() -> None:
        busy_wait(0.002)

    run_callbacks(loop, a, a, b)
    counts = loop.monitor_snapshot().slow_callback_counts
    assert counts[a.__qualname__] == 2 and counts[b.__qualname__] == 1


def test_slow_callbacks_are_logged_with_structured_fields(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="monitored_ioloop.slow_callbacks"):
        loop.run_until_complete(asyncio.ensure_future(sleepy_handler(), loop=loop))
    (record,) = [r for r in caplog.records if r.name == "monitored_ioloop.slow_callbacks"]
    assert record.coroutine == "sleepy_handler"  # type: ignore[attr-defined]
    assert record.wall_time >= 0.15  # type: ignore[attr-defined]
    assert span_of(record.location)[0] == __file__  # type: ignore[attr-defined]


def test_slow_callback_threshold_none_turns_recording_off(loop: Loop) -> None:
    loop.slow_callback_threshold = None
    assert loop.slow_callback_threshold is None
    run_callbacks(loop, lambda: busy_wait(0.11))
    assert loop.monitor_snapshot().slow_callbacks_total == 0


def test_slow_callback_threshold_is_set_through_the_factory_and_policy() -> None:
    loop = monitored_uvloop_loop_factory(slow_callback_threshold=0.5)()
    try:
        assert loop.slow_callback_threshold == 0.5
    finally:
        loop.close()
    policy = MonitoredUvloopEventLoopPolicy(slow_callback_threshold=None, slow_callback_capacity=3)
    loop = policy.new_event_loop()
    try:
        assert loop.slow_callback_threshold is None
        assert loop.slow_callback_capacity == 3  # type: ignore[attr-defined]
    finally:
        loop.close()


# -- top callbacks -----------------------------------------------------------------------------


def cheap_but_often() -> None:
    busy_wait(0.0005)


def slow_once() -> None:
    busy_wait(0.05)


def test_a_cheap_frequent_callback_ranks_above_a_slow_rare_one(loop: Loop) -> None:
    run_callbacks(loop, slow_once, *[cheap_but_often] * 200)
    top = loop.monitor_snapshot().top_callbacks
    names = [t.name for t in top]
    assert names.index("cheap_but_often") < names.index("slow_once")
    cheap = top[names.index("cheap_but_often")]
    assert cheap.count == 200
    assert cheap.location == f"{__file__}:{cheap_but_often.__code__.co_firstlineno}"
    assert [t.busy_time for t in top] == sorted((t.busy_time for t in top), reverse=True)


def test_task_steps_are_counted_under_their_coroutine(loop: Loop) -> None:
    async def worker() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*[worker() for _ in range(10)])

    loop.run_until_complete(main())
    top = {t.name: t for t in loop.monitor_snapshot().top_callbacks}
    assert top[worker.__qualname__].count == 10 * 6


def test_methods_and_builtins_are_named(loop: Loop) -> None:
    class Worker:
        def tick(self) -> None:
            pass

    w = Worker()
    fut = loop.create_future()
    run_callbacks(loop, w.tick, w.tick, lambda: fut.set_result(1))
    names = {t.name for t in loop.monitor_snapshot().top_callbacks}
    assert any(n.endswith("Worker.tick") for n in names), names


# -- the monitor callback's minimum wall time ---------------------------------------------------


def test_monitor_min_wall_time_reports_only_slow_dispatches() -> None:
    reports: list[IoLoopMonitorState] = []
    loop = Loop(reports.append, monitor_min_wall_time=0.01)
    try:
        run_callbacks(loop, *[lambda: None] * 100, lambda: busy_wait(0.02), lambda: None)
    finally:
        loop.close()
    assert len(reports) == 1
    assert reports[0].callback_wall_time >= 0.02
    assert loop.monitor_min_wall_time == 0.01


def test_monitor_state_carries_kind_task_name_and_start() -> None:
    reports: list[IoLoopMonitorState] = []
    loop = Loop(reports.append)
    try:
        before = loop.time()

        async def main() -> None:
            loop.call_later(0, lambda: None)
            await asyncio.sleep(0.01)

        loop.run_until_complete(loop.create_task(main(), name="the-task"))
    finally:
        loop.close()
    kinds = {r.kind for r in reports}
    assert {"callback", "timer"} <= kinds
    assert "the-task" in {r.task_name for r in reports}
    assert all(before <= r.started_at <= loop.time() for r in reports)


def test_factory_passes_monitor_min_wall_time() -> None:
    reports: list[IoLoopMonitorState] = []
    loop = monitored_uvloop_loop_factory(reports.append, monitor_min_wall_time=1.0)()
    try:
        run_callbacks(loop, lambda: None)  # type: ignore[arg-type]
    finally:
        loop.close()
    assert reports == []


# -- options and misuse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, error",
    [
        ("slow_callback_threshold", -1, ValueError),
        ("slow_callback_threshold", float("nan"), ValueError),
        ("slow_callback_threshold", "0.1", TypeError),
        ("slow_callback_threshold", True, TypeError),
        ("slow_callback_capacity", 0, ValueError),
        ("slow_callback_capacity", 2.5, TypeError),
        ("monitor_min_wall_time", -0.5, ValueError),
        ("monitor_min_wall_time", "fast", TypeError),
        ("watchdog_threshold", 0, ValueError),
        ("watchdog_threshold", -1, ValueError),
        ("watchdog_threshold", "1", TypeError),
        ("watchdog_callback", 42, TypeError),
    ],
)
def test_bad_option_values_are_refused(option: str, value: Any, error: type) -> None:
    kwargs: dict[str, Any] = {option: value}
    if option == "watchdog_callback":
        kwargs["watchdog_threshold"] = 1.0
    with pytest.raises(error):
        Loop(**kwargs)


def test_a_monitor_that_stops_the_loop_and_schedules_work_is_obeyed() -> None:
    seen: list[str] = []

    def monitor(state: IoLoopMonitorState) -> None:
        if state.callback_wall_time >= 0.01 and not seen:
            seen.append("stop")
            loop.call_soon(lambda: seen.append("scheduled"))
            loop.stop()

    loop = Loop(monitor, monitor_min_wall_time=0.01)
    try:
        loop.call_soon(lambda: busy_wait(0.02))
        loop.run_forever()
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert seen == ["stop", "scheduled"]


def test_a_failing_slow_callback_is_recorded_and_reported(loop: Loop) -> None:
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: errors.append(context))

    def slow_failure() -> None:
        busy_wait(0.11)
        raise RuntimeError("late and broken")

    run_callbacks(loop, slow_failure)
    snap = loop.monitor_snapshot()
    assert snap.slow_callbacks_total == 1 and snap.errors == 1
    assert isinstance(errors[0]["exception"], RuntimeError)


def test_the_aggregates_can_be_switched_off_for_measuring(loop: Loop) -> None:
    loop._set_aggregating(False)
    run_callbacks(loop, lambda: None)
    assert loop.monitor_snapshot().dispatches == 0


def test_histogram_arrays_are_native_u64() -> None:
    assert array("Q").itemsize == 8


# -- debug mode --------------------------------------------------------------------------------


def test_debug_slow_warning_names_the_task_and_where_it_runs(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05

    async def handler() -> None:
        await asyncio.sleep(0)
        time.sleep(0.1)
        await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(loop.create_task(handler(), name="Task-req"))
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    slow = [m for m in messages if m.startswith("Executing <Task")]
    assert slow, messages
    assert "name='Task-req'" in slow[0]
    assert "handler()" in slow[0] and __file__ in slow[0]
    assert "TaskStepMethWrapper" not in slow[0]


def test_debug_handles_keep_their_source_traceback(loop: Loop) -> None:
    loop.set_debug(True)
    here = inspect.currentframe()
    assert here is not None
    handle = loop.call_soon(lambda: None)
    line = here.f_lineno - 1
    timer = loop.call_later(10, lambda: None)
    timer_line = here.f_lineno - 1
    tb = handle._source_traceback
    assert tb is not None and tb[-1][:3] == (__file__, line, here.f_code.co_name)
    assert timer._source_traceback is not None
    assert timer._source_traceback[-1][1] == timer_line
    assert f"created at {__file__}:{line}" in repr(handle)
    timer.cancel()
    loop.set_debug(False)
    assert loop.call_soon(lambda: None)._source_traceback is None


def test_debug_exception_context_carries_the_source_traceback(loop: Loop) -> None:
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    loop.set_debug(True)

    def fail() -> None:
        raise ValueError("boom")

    loop.call_soon(fail)
    loop.call_soon(loop.stop)
    loop.run_forever()
    (context,) = contexts
    assert context["source_traceback"][-1][0] == __file__


def test_a_blocking_monitor_delays_but_does_not_break_the_loop() -> None:
    seen: list[IoLoopMonitorState] = []

    def slow_monitor(state: IoLoopMonitorState) -> None:
        seen.append(state)
        time.sleep(0.05)

    loop = Loop(slow_monitor)
    try:
        run_callbacks(loop, lambda: None, lambda: None)
        snap = loop.monitor_snapshot()
    finally:
        loop.close()
    assert len(seen) == 3
    # The monitor's own time is not the callbacks'.
    assert all(s.callback_wall_time < 0.05 for s in seen)
    assert snap.wall_time.max < 0.05


def test_monitored_asyncio_takes_monitor_min_wall_time() -> None:
    from monitored_ioloop.monitored_asyncio import (
        MonitoredAsyncIOEventLoopPolicy,
        monitored_asyncio_loop_factory,
    )

    reports: list[IoLoopMonitorState] = []
    loop = monitored_asyncio_loop_factory(reports.append, monitor_min_wall_time=0.01)()
    try:
        for cb in [lambda: None] * 20 + [lambda: busy_wait(0.02)]:
            loop.call_soon(cb)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert len(reports) == 1 and reports[0].callback_wall_time >= 0.02
    with pytest.raises(ValueError):
        MonitoredAsyncIOEventLoopPolicy(reports.append, monitor_min_wall_time=-1)
