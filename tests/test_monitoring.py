"""What the monitor callback sees: wall time, lag, pending count and a readable name for each
dispatch; the native loop first, then the same core checks for the pure-Python
MonitoredSelectorEventLoop."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import weakref
from typing import Any, Callable, Iterator

import pytest
from monitored_ioloop.loop import Loop
from monitored_ioloop.monitored_asyncio import MonitoredSelectorEventLoop
from monitored_ioloop.monitoring import IoLoopMonitorState

pytestmark = pytest.mark.timeout(30)

BUSY_S = 0.2


def busy_wait(seconds: float) -> None:
    """Holds the loop's thread, as a CPU-bound callback would, for a little longer than
    ``seconds``: the loop times dispatches in TSC ticks calibrated against the monotonic clock,
    which may count a few microseconds short over 50 ms."""
    end = time.perf_counter() + seconds * 1.001
    while time.perf_counter() < end:
        pass


def noop() -> None:
    pass


class Worker:
    def tick(self) -> None:
        pass


class Reports(list):  # type: ignore[type-arg]
    """The monitor: keeps every state it is given."""

    def __call__(self, state: IoLoopMonitorState) -> None:
        self.append(state)

    def named(self, fragment: str) -> list[IoLoopMonitorState]:
        return [s for s in self if fragment in s.callback_pretty_name]


LoopFactory = Callable[[Reports], asyncio.AbstractEventLoop]

LOOP_KINDS: dict[str, LoopFactory] = {
    "native": lambda reports: Loop(reports),
    "monitored_asyncio": lambda reports: MonitoredSelectorEventLoop(reports),
}


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def monitored(loop: Loop, reports: Reports) -> Loop:
    """The fixture's native loop, with ``reports`` as its monitor."""
    loop.set_monitor_callback(reports)
    return loop


@pytest.fixture(params=sorted(LOOP_KINDS))
def any_monitored(request: pytest.FixtureRequest, reports: Reports) -> Iterator[Any]:
    """A monitored loop of each kind (native and monitored_asyncio) reporting to ``reports``."""
    event_loop = LOOP_KINDS[request.param](reports)
    try:
        yield event_loop
    finally:
        event_loop.close()


# -- wall time and lag --------------------------------------------------------------------------


def test_busy_coroutine_reports_its_wall_time(any_monitored: Any, reports: Reports) -> None:
    async def crunch_numbers() -> None:
        busy_wait(BUSY_S)

    any_monitored.run_until_complete(crunch_numbers())
    steps = reports.named("crunch_numbers")
    assert steps, [s.callback_pretty_name for s in reports]
    wall = max(s.callback_wall_time for s in steps)
    assert wall == pytest.approx(BUSY_S, rel=0.1)


def test_busy_callback_reports_its_wall_time(any_monitored: Any, reports: Reports) -> None:
    any_monitored.call_soon(busy_wait, BUSY_S)
    any_monitored.call_soon(any_monitored.stop)
    any_monitored.run_forever()
    (state,) = reports.named("busy_wait")
    assert state.callback_wall_time == pytest.approx(BUSY_S, rel=0.1)


def test_callback_behind_a_blocking_neighbour_reports_the_lag(
    any_monitored: Any, reports: Reports
) -> None:
    any_monitored.call_soon(busy_wait, BUSY_S)
    any_monitored.call_soon(noop)
    any_monitored.call_soon(any_monitored.stop)
    any_monitored.run_forever()
    (state,) = reports.named("noop")
    assert BUSY_S <= state.loop_lag < BUSY_S + 0.05


def test_lag_of_a_callback_scheduled_by_a_callback_counts_from_its_end(
    monitored: Loop, reports: Reports
) -> None:
    # noop can first run when its creator ends, not while the creator still busy-waits.
    def schedule_then_block() -> None:
        monitored.call_soon(noop)
        busy_wait(BUSY_S)
        monitored.call_soon(monitored.stop)

    monitored.call_soon(schedule_then_block)
    monitored.run_forever()
    (state,) = reports.named("noop")
    assert 0 <= state.loop_lag < BUSY_S / 2


def test_lag_of_a_callback_scheduled_by_a_callback_includes_its_neighbours(
    monitored: Loop, reports: Reports
) -> None:
    # noop could run once `schedule` ended; the busy neighbour queued behind `schedule` held it.
    def schedule() -> None:
        monitored.call_soon(noop)
        monitored.call_soon(monitored.stop)

    monitored.call_soon(schedule)
    monitored.call_soon(busy_wait, BUSY_S)
    monitored.run_forever()
    (state,) = reports.named("noop")
    assert BUSY_S <= state.loop_lag < BUSY_S + 0.05


def test_timer_lag_is_measured_from_its_deadline(any_monitored: Any, reports: Reports) -> None:
    def late_timer() -> None:
        pass

    timer = any_monitored.call_later(0.05, late_timer)
    any_monitored.call_soon(busy_wait, BUSY_S)
    any_monitored.call_later(0.25, any_monitored.stop)
    started = any_monitored.time()
    any_monitored.run_forever()
    (state,) = reports.named("late_timer")
    # The timer became due 0.05 s in but the loop was busy until about 0.2 s.
    expected = BUSY_S - (timer.when() - started)
    assert expected - 0.01 <= state.loop_lag <= expected + 0.05
    assert 0.13 <= state.loop_lag <= 0.25


# -- the pending count --------------------------------------------------------------------------


def test_pending_count_excludes_the_running_callback(any_monitored: Any, reports: Reports) -> None:
    for _ in range(9):
        any_monitored.call_soon(noop)
    any_monitored.call_soon(any_monitored.stop)
    any_monitored.run_forever()
    assert [s.loop_handles_count for s in reports] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]


def test_pending_count_excludes_cancelled_handles(any_monitored: Any, reports: Reports) -> None:
    handles = [any_monitored.call_soon(noop) for _ in range(9)]
    any_monitored.call_soon(any_monitored.stop)
    handles[4].cancel()
    any_monitored.run_forever()
    assert [s.loop_handles_count for s in reports] == [8, 7, 6, 5, 4, 3, 2, 1, 0]


def test_pending_count_counts_timers(monitored: Loop, reports: Reports) -> None:
    monitored.call_later(0.01, noop)
    monitored.call_later(0.02, noop)
    monitored.call_soon(noop)
    monitored.call_later(0.03, monitored.stop)
    monitored.run_forever()
    assert [s.loop_handles_count for s in reports] == [3, 2, 1, 0]


def test_pending_count_excludes_a_timer_cancelled_after_it_became_due(
    monitored: Loop, reports: Reports
) -> None:
    handles = []
    when = monitored.time() + 0.01
    monitored.call_at(when, lambda: handles[0].cancel())
    handles.append(monitored.call_at(when, noop))
    monitored.call_at(when, monitored.stop)
    monitored.run_forever()
    assert [s.loop_handles_count for s in reports] == [1, 0]
    assert monitored.pending_handles_count() == 0


def test_pending_count_falls_back_to_zero_after_a_cancelled_handle_and_a_raising_callback(
    any_monitored: Any, reports: Reports
) -> None:
    any_monitored.set_exception_handler(lambda lp, ctx: None)

    def fail() -> None:
        raise ValueError("boom")

    any_monitored.call_soon(noop).cancel()
    any_monitored.call_later(0.001, noop).cancel()
    any_monitored.call_soon(fail)
    any_monitored.call_soon(any_monitored.stop)
    any_monitored.run_forever()
    assert reports[-1].loop_handles_count == 0
    # A leak in the count would survive into the next run.
    reports.clear()
    any_monitored.call_soon(noop)
    any_monitored.call_soon(any_monitored.stop)
    any_monitored.run_forever()
    assert [s.loop_handles_count for s in reports] == [1, 0]


def test_pending_handles_count_rises_and_falls(loop: Loop) -> None:
    assert loop.pending_handles_count() == 0
    handles = [loop.call_soon(noop) for _ in range(5)]
    timer = loop.call_later(10, noop)
    assert loop.pending_handles_count() == 6
    handles[0].cancel()
    timer.cancel()
    assert loop.pending_handles_count() == 4
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert loop.pending_handles_count() == 0


def test_pending_count_stays_exact_with_threadsafe_handles_cancelled_before_they_run(
    monitored: Loop, reports: Reports
) -> None:
    monitored.call_soon_threadsafe(noop).cancel()
    monitored.call_soon(noop).cancel()
    monitored.call_soon(noop)
    monitored.call_soon(monitored.stop)
    monitored.run_forever()
    assert [s.loop_handles_count for s in reports] == [1, 0]
    assert monitored.pending_handles_count() == 0


# -- the monitor itself -------------------------------------------------------------------------


def program_result(event_loop: Any) -> list[int]:
    async def square(n: int) -> int:
        await asyncio.sleep(0)
        return n * n

    async def main() -> list[int]:
        return list(await asyncio.gather(*(square(n) for n in range(5))))

    return event_loop.run_until_complete(main())  # type: ignore[no-any-return]


def test_a_raising_monitor_changes_nothing_for_the_program(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_monitor(state: IoLoopMonitorState) -> None:
        raise RuntimeError("monitor broke")

    quiet, noisy = Loop(), Loop(broken_monitor)
    try:
        with caplog.at_level(logging.WARNING):
            assert program_result(noisy) == program_result(quiet) == [0, 1, 4, 9, 16]
        # The loop goes on after the failures.
        ran = []
        noisy.call_soon(ran.append, "still running")
        noisy.call_soon(noisy.stop)
        noisy.run_forever()
        assert ran == ["still running"]
    finally:
        quiet.close()
        noisy.close()
    assert any("Monitor callback failed" in r.getMessage() for r in caplog.records)


def test_a_raising_monitor_changes_nothing_for_monitored_asyncio(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_monitor(state: IoLoopMonitorState) -> None:
        raise RuntimeError("monitor broke")

    noisy = MonitoredSelectorEventLoop(broken_monitor)
    try:
        with caplog.at_level(logging.WARNING):
            assert program_result(noisy) == [0, 1, 4, 9, 16]
    finally:
        noisy.close()
    assert any("Monitor callback failed" in r.getMessage() for r in caplog.records)


def test_keyboard_interrupt_raised_in_the_monitor_propagates_out_of_run_forever(
    loop: Loop,
) -> None:
    def interrupted_monitor(state: IoLoopMonitorState) -> None:
        raise KeyboardInterrupt

    loop.set_monitor_callback(interrupted_monitor)
    loop.call_soon(noop)
    loop.call_later(0.05, loop.stop)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()


def test_keyboard_interrupt_raised_in_the_monitor_propagates_on_monitored_asyncio() -> None:
    def interrupted_monitor(state: IoLoopMonitorState) -> None:
        raise KeyboardInterrupt

    event_loop = MonitoredSelectorEventLoop(interrupted_monitor)
    try:
        event_loop.call_soon(noop)
        event_loop.call_later(0.05, event_loop.stop)
        with pytest.raises(KeyboardInterrupt):
            event_loop.run_forever()
    finally:
        event_loop.close()


def test_monitor_is_called_when_the_callback_raised(any_monitored: Any, reports: Reports) -> None:
    any_monitored.set_exception_handler(lambda lp, ctx: None)

    def explode() -> None:
        busy_wait(0.01)
        raise ValueError("boom")

    any_monitored.call_soon(explode)
    any_monitored.call_soon(any_monitored.stop)
    any_monitored.run_forever()
    (state,) = reports.named("explode")
    assert state.callback_wall_time >= 0.01


def from_timer() -> None:
    pass


def from_callback() -> None:
    pass


def from_threadsafe() -> None:
    pass


def test_monitor_is_called_for_timers_and_threadsafe_calls(
    any_monitored: Any, reports: Reports
) -> None:
    any_monitored.call_later(0.001, from_timer)
    any_monitored.call_soon_threadsafe(from_threadsafe)
    any_monitored.call_later(0.01, any_monitored.stop)
    any_monitored.run_forever()
    assert len(reports.named("from_timer")) == 1
    assert len(reports.named("from_threadsafe")) == 1


def test_a_dispatch_reports_its_kind_and_when_it_started_on_the_loop_clock(
    monitored: Loop, reports: Reports
) -> None:
    before = monitored.time()
    timer = monitored.call_later(0.005, from_timer)
    monitored.call_soon(from_callback)
    monitored.call_soon_threadsafe(from_threadsafe)
    monitored.call_later(0.02, monitored.stop)
    monitored.run_forever()
    after = monitored.time()
    kinds = {
        name: reports.named(name)[0].kind
        for name in ("from_timer", "from_callback", "from_threadsafe")
    }
    assert kinds == {
        "from_timer": "timer",
        "from_callback": "callback",
        "from_threadsafe": "threadsafe",
    }
    starts = [s.started_at for s in reports]
    assert starts == sorted(starts)
    assert before <= starts[0] and starts[-1] <= after
    # A timer never runs early, and its start is read on the clock its deadline was set on.
    assert reports.named("from_timer")[0].started_at >= timer.when()


def test_set_monitor_callback_none_stops_reports(monitored: Loop, reports: Reports) -> None:
    monitored.call_soon(monitored.stop)
    monitored.run_forever()
    assert len(reports) == 1
    monitored.set_monitor_callback(None)
    assert monitored.get_monitor_callback() is None
    monitored.call_soon(noop)
    monitored.call_soon(monitored.stop)
    monitored.run_forever()
    assert len(reports) == 1


def test_get_monitor_callback_returns_the_monitor(monitored: Loop, reports: Reports) -> None:
    assert monitored.get_monitor_callback() is reports


def test_monitor_set_while_the_loop_runs_reports_from_the_next_iteration(
    loop: Loop, reports: Reports
) -> None:
    def after() -> None:
        pass

    def install() -> None:
        loop.set_monitor_callback(reports)
        loop.call_soon(after)
        loop.call_soon(loop.stop)

    loop.call_soon(install)
    loop.run_forever()
    assert len(reports.named("after")) == 1
    assert reports.named("install") == []


# -- names --------------------------------------------------------------------------------------


def test_task_step_names_inside_gather_contain_their_coroutine_names(
    any_monitored: Any, reports: Reports
) -> None:
    async def fetch_user() -> None:
        await asyncio.sleep(0)

    async def fetch_order() -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(fetch_user(), fetch_order())

    any_monitored.run_until_complete(main())
    names = {s.callback_pretty_name for s in reports}
    assert any(re.fullmatch(r"Task-\d+ \(.*fetch_user\)", n) for n in names), names
    assert any(re.fullmatch(r"Task-\d+ \(.*fetch_order\)", n) for n in names), names
    assert any(re.fullmatch(r"Task-\d+ \(.*main\)", n) for n in names), names


def test_a_named_task_reports_its_name(any_monitored: Any, reports: Reports) -> None:
    async def poll_queue() -> None:
        await asyncio.sleep(0)

    task = any_monitored.create_task(poll_queue(), name="queue-poller")
    any_monitored.run_until_complete(task)
    names = {s.callback_pretty_name for s in reports}
    assert any(re.fullmatch(r"queue-poller \(.*poll_queue\)", n) for n in names), names


def test_a_bound_method_is_named_class_dot_method(any_monitored: Any, reports: Reports) -> None:
    any_monitored.call_soon(Worker().tick)
    any_monitored.call_soon(any_monitored.stop)
    any_monitored.run_forever()
    assert reports[0].callback_pretty_name == "Worker.tick"


def test_a_function_is_named_by_its_qualname(monitored: Loop, reports: Reports) -> None:
    monitored.call_soon(busy_wait, 0)
    monitored.call_soon(monitored.stop)
    monitored.run_forever()
    assert reports[0].callback_pretty_name == "busy_wait"


# -- IoLoopMonitorState -------------------------------------------------------------------------


def test_monitor_state_is_constructed_from_the_four_fields() -> None:
    state = IoLoopMonitorState(0.5, "handler", 3, 0.25)
    assert state.callback_wall_time == 0.5
    assert state.callback_pretty_name == "handler"
    assert state.loop_handles_count == 3
    assert state.loop_lag == 0.25


def test_monitor_state_is_constructed_with_keywords() -> None:
    state = IoLoopMonitorState(
        callback_wall_time=0.5, callback_pretty_name="handler", loop_handles_count=3, loop_lag=0.25
    )
    assert state == IoLoopMonitorState(0.5, "handler", 3, 0.25)


ORIGINAL_FIELDS = ["callback_wall_time", "callback_pretty_name", "loop_handles_count", "loop_lag"]
ADDED_FIELDS = ["kind", "task_name", "started_at"]


def test_monitor_state_fields_keep_the_original_four_first() -> None:
    names = [f.name for f in dataclasses.fields(IoLoopMonitorState)]
    assert names == ORIGINAL_FIELDS + ADDED_FIELDS


def test_monitor_state_asdict_gives_the_fields_with_defaults_for_the_new_ones() -> None:
    state = IoLoopMonitorState(0.5, "handler", 3, 0.25)
    assert dataclasses.asdict(state) == {
        "callback_wall_time": 0.5,
        "callback_pretty_name": "handler",
        "loop_handles_count": 3,
        "loop_lag": 0.25,
        "kind": "callback",
        "task_name": None,
        "started_at": 0.0,
    }


def test_monitor_state_takes_the_new_fields_by_keyword() -> None:
    state = IoLoopMonitorState(0.5, "h", 3, 0.25, kind="timer", task_name="t", started_at=2.0)
    assert (state.kind, state.task_name, state.started_at) == ("timer", "t", 2.0)


def test_monitor_state_from_the_loop_works_with_asdict(monitored: Loop, reports: Reports) -> None:
    monitored.call_soon(monitored.stop)
    monitored.run_forever()
    as_dict = dataclasses.asdict(reports[0])
    assert list(as_dict) == ORIGINAL_FIELDS + ADDED_FIELDS
    assert as_dict["callback_pretty_name"].endswith("stop")
    assert as_dict["kind"] == "callback"


def test_monitor_state_is_a_dataclass() -> None:
    assert dataclasses.is_dataclass(IoLoopMonitorState(0.5, "handler", 3, 0.25))


def test_monitor_state_supports_replace() -> None:
    state = IoLoopMonitorState(0.5, "handler", 3, 0.25)
    assert dataclasses.replace(state, loop_lag=1.0) == IoLoopMonitorState(0.5, "handler", 3, 1.0)


def test_monitor_state_repr_shows_the_fields() -> None:
    text = repr(IoLoopMonitorState(0.5, "handler", 3, 0.25))
    assert text == (
        "IoLoopMonitorState(callback_wall_time=0.5, callback_pretty_name='handler', "
        "loop_handles_count=3, loop_lag=0.25, kind='callback', task_name=None, started_at=0.0)"
    )


def test_monitor_state_matches_by_position_in_field_order() -> None:
    # What a `case IoLoopMonitorState(wall, name, count, lag)` pattern uses (3.10+ syntax).
    assert list(IoLoopMonitorState.__match_args__) == ORIGINAL_FIELDS + ADDED_FIELDS


def test_monitor_state_figures_are_read_only() -> None:
    state = IoLoopMonitorState(0.5, "handler", 3, 0.25)
    for name in ORIGINAL_FIELDS + ADDED_FIELDS:
        with pytest.raises(AttributeError):
            setattr(state, name, 1)


# -- states are reused only when nobody can see them --------------------------------------------


def fields_of(state: IoLoopMonitorState) -> tuple[Any, ...]:
    return tuple(getattr(state, name) for name in ORIGINAL_FIELDS + ADDED_FIELDS)


def alternate_callbacks(loop: Loop, count: int) -> None:
    """Runs ``count`` dispatches alternating between two named callables, then stops."""

    def first() -> None:
        pass

    def second() -> None:
        pass

    for i in range(count):
        loop.call_soon(first if i % 2 == 0 else second)
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_a_state_the_monitor_keeps_never_changes(loop: Loop) -> None:
    kept: list[tuple[IoLoopMonitorState, tuple[Any, ...]]] = []
    seen = 0

    def monitor(state: IoLoopMonitorState) -> None:
        nonlocal seen
        seen += 1
        if seen % 3 == 0:
            kept.append((state, fields_of(state)))

    loop.set_monitor_callback(monitor)
    alternate_callbacks(loop, 30)
    assert len(kept) == 10
    for state, fields in kept:
        assert fields_of(state) == fields
    assert {fields[1] for _, fields in kept} == {
        "alternate_callbacks.<locals>.first",
        "alternate_callbacks.<locals>.second",
    }


def test_a_state_the_monitor_lets_go_of_names_the_next_callback(loop: Loop) -> None:
    names: list[str] = []
    loop.set_monitor_callback(lambda state: names.append(state.callback_pretty_name))
    alternate_callbacks(loop, 6)
    assert [name.rsplit(".", 1)[-1] for name in names] == ["first", "second"] * 3 + ["stop"]


def test_a_state_watched_by_a_weak_reference_is_not_refilled(loop: Loop) -> None:
    watched: list[tuple[weakref.ref[IoLoopMonitorState], tuple[Any, ...]]] = []
    loop.set_monitor_callback(lambda state: watched.append((weakref.ref(state), fields_of(state))))
    alternate_callbacks(loop, 10)
    for ref, fields in watched:
        state = ref()
        assert state is None or fields_of(state) == fields


class Stopper:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def stop(self) -> None:
        self.loop.stop()


def test_a_state_let_go_of_does_not_keep_its_callback_alive(loop: Loop) -> None:
    stopper = Stopper(loop)
    gone = weakref.ref(stopper)
    loop.set_monitor_callback(lambda state: state.callback_pretty_name)
    loop.call_soon(stopper.stop)
    del stopper
    loop.run_forever()
    assert gone() is None


def test_reused_classes_have_a_weak_reference_slot() -> None:
    # Reuse is skipped for an object a weak reference may watch, found through this slot.
    from monitored_ioloop._native import Handle

    assert IoLoopMonitorState.__weakrefoffset__ > 0
    assert Handle.__weakrefoffset__ > 0


# -- dispatch_stats -----------------------------------------------------------------------------


def test_dispatch_stats_count_dispatches(loop: Loop) -> None:
    before = loop.dispatch_stats()["dispatches"]
    for _ in range(5):
        loop.call_soon(noop)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert loop.dispatch_stats()["dispatches"] - before == 6


def test_dispatch_stats_do_not_count_cancelled_handles(loop: Loop) -> None:
    loop.call_soon(noop).cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert loop.dispatch_stats()["dispatches"] == 1


def test_dispatch_stats_count_errors(loop: Loop) -> None:
    loop.set_exception_handler(lambda lp, ctx: None)

    def fail() -> None:
        raise ValueError("boom")

    loop.call_soon(fail)
    loop.call_soon(fail)
    loop.call_soon(loop.stop)
    loop.run_forever()
    stats = loop.dispatch_stats()
    assert (stats["dispatches"], stats["errors"]) == (3, 2)


def test_dispatch_stats_measure_busy_time_and_lag(loop: Loop) -> None:
    loop.call_soon(busy_wait, 0.05)
    loop.call_soon(noop)
    loop.call_soon(loop.stop)
    loop.run_forever()
    stats = loop.dispatch_stats()
    assert stats["max_wall_time"] >= 0.05
    assert stats["busy_time"] >= stats["max_wall_time"]
    assert stats["max_lag"] >= 0.05
    assert stats["total_lag"] >= stats["max_lag"]
    assert stats["iterations"] >= 1
