//! `Loop`: the one place that owns the ready queue, the timer heap and the run cycle.
//!
//! An iteration: compute how long to wait (zero while work is ready), run one libuv iteration
//! that waits in its own epoll up to then with the GIL released (without waiting, and skipped
//! while work is ready and the last poll is under 250 us old), move expired timers to the ready
//! queue, then run the handles that were ready when the iteration started, each one timed
//! natively.
//! Python's subclass (`monitored_ioloop.loop.Loop`) adds asyncio's cold paths around this.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::{GILOnceCell, GILProtected};
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::context::{self, is_fatal, EmptyContext};
use crate::gil_cell::GilCell;
use crate::handles::{
    format_callback, refs_in_traverse, Callback, CancelCounts, Handle, HandlePool, Parts,
    TimerHandle,
};
use crate::io_watchers::{Fired, Watchers, READABLE, WRITABLE};
use crate::loop_slots::{LoopSlot, Registered};
use crate::monitoring::watchdog;
use crate::monitoring::{
    calibrate, loop_time_at, monotonic_ns, seconds_to_deadline_ns, slow, tick, ticks_to_ns,
    Aggregates, Histogram, Key, Kind, Probe, Reporter, StartedAt,
};
use crate::timers::TimerQueue;

/// While work is ready, libuv's backend is polled (without waiting) at most this often.
const IO_POLL_INTERVAL_NS: u64 = 250_000;
/// The longest single wait; a timer further away is reached in several waits.
const MAX_WAIT_MS: u64 = 24 * 3600 * 1000;
/// A dispatch this long or longer is recorded as a slow callback, unless the user says otherwise.
const DEFAULT_SLOW_THRESHOLD_NS: u64 = 100_000_000;

enum Entry {
    Soon(Py<Handle>),
    Timer(Py<TimerHandle>),
}

impl Entry {
    #[inline]
    fn callback(&self) -> &Callback {
        match self {
            Entry::Soon(h) => &h.get().inner,
            Entry::Timer(h) => &h.get().inner,
        }
    }

    fn forget_cancelled(&self, counts: &CancelCounts) {
        let counter = match self {
            Entry::Soon(_) => &counts.ready,
            Entry::Timer(_) => &counts.timers,
        };
        CancelCounts::forget(counter);
    }

    fn as_any<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match self {
            Entry::Soon(h) => h.bind(py).clone().into_any(),
            Entry::Timer(h) => h.bind(py).clone().into_any(),
        }
    }
}

/// A handle waiting to run, with the moment it became runnable (for loop lag): the tick it
/// was queued at, plus, for a timer, how late its deadline already was at that tick.
struct Ready {
    entry: Entry,
    ready_tick: u64,
    late_ns: u64,
    kind: Kind,
}

#[derive(Default)]
struct Core {
    ready: VecDeque<Ready>,
    /// The emptied batch of the last iteration, kept to reuse its allocation.
    spare: Option<VecDeque<Ready>>,
    timers: TimerQueue<Py<TimerHandle>>,
}

/// libuv's loop (which owns its handles) and the Python handles watching descriptors on it.
struct Uv {
    watchers: Watchers,
    event_loop: uv_sys::Loop,
    /// Reused by every poll (taken out while its handles are queued).
    fired: Fired,
}

#[pyclass(module = "monitored_ioloop._native", subclass, frozen, weakref)]
pub struct Loop {
    core: GilCell<Core>,
    /// Boxed: each poll takes it out of the cell and puts it back, moving a pointer.
    uv: GilCell<Option<Box<Uv>>>,
    waker: uv_sys::Waker,
    counts: Arc<CancelCounts>,
    /// Its place in the table its handles count their cancellations through.
    slot: Registered,
    running: AtomicBool,
    stopping: AtomicBool,
    closed: AtomicBool,
    debug: AtomicBool,
    /// A task factory is set (`create_task` then goes through asyncio's implementation).
    has_task_factory: AtomicBool,
    monitor: GilCell<Option<Py<PyAny>>>,
    has_monitor: AtomicBool,
    reporter: Reporter,
    /// Dispatches shorter than this are not reported to the monitor callback.
    monitor_min_wall_ns: AtomicU64,
    /// Dispatches at least this long are recorded as slow (u64::MAX: never).
    slow_threshold_ns: AtomicU64,
    aggregates: GILProtected<RefCell<Aggregates>>,
    /// Off only to measure what the aggregates cost (the benchmark's "monitoring cost" table).
    aggregating: AtomicBool,
    /// The dispatch running now, for the watchdog.
    probe: Arc<Probe>,
    open_transports: AtomicUsize,
    signal_fd: AtomicI32,
    last_poll_tick: AtomicU64,
    /// The latest tick the loop read (a poll's end, a dispatch's last): "now" for deciding
    /// whether to poll, without reading the clock once more.
    last_tick: AtomicU64,
    /// A timer handle was untracked during this run (so its stop has some to track again).
    untracked_timers: AtomicBool,
    /// A batch is being dispatched: a `call_soon` from a callback is stamped ready when that
    /// callback ends (the moment it could first run), from the clock read that ends its timing,
    /// instead of reading the clock once more.
    in_dispatch: AtomicBool,
    /// Some entries of the ready queue wait for that stamp.
    unstamped: AtomicBool,
    /// What handles without a context of their own run in.
    empty_context: EmptyContext,
    /// Spent `call_soon` handles, for reuse.
    handles: HandlePool,
}

/// `ready_tick` of an entry queued during a dispatch, until that dispatch ends.
const UNSTAMPED: u64 = 0;

static ASYNCIO_FUTURE: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
static ASYNCIO_TASK: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
static BASE_CREATE_TASK: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
static TASK_TAKES_CONTEXT: GILOnceCell<bool> = GILOnceCell::new();
/// Keyword names of the Future and Task calls: loop= alone, or loop=, name= (and context=).
static LOOP_KWNAMES: GILOnceCell<Py<PyTuple>> = GILOnceCell::new();
static TASK_KWNAMES: GILOnceCell<Py<PyTuple>> = GILOnceCell::new();

fn loop_keyword(py: Python<'_>) -> &Py<PyTuple> {
    LOOP_KWNAMES.get_or_init(py, || context::keyword_names(py, &["loop"]).unbind())
}

fn asyncio_attr(py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
    Ok(py.import(intern!(py, "asyncio"))?.getattr(name)?.unbind())
}

/// A descriptor from an int or an object with `fileno()`, as `selectors` accepts them.
fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<i32> {
    let fd: i64 = match obj.extract::<i64>() {
        Ok(fd) => fd,
        Err(_) => obj
            .call_method0(intern!(obj.py(), "fileno"))
            .and_then(|f| f.extract::<i64>())
            .map_err(|_| {
                let shown = obj.repr().map(|r| r.to_string()).unwrap_or_default();
                PyValueError::new_err(format!("Invalid file object: {shown}"))
            })?,
    };
    if fd < 0 || fd > i32::MAX as i64 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    Ok(fd as i32)
}

/// A delay or deadline in seconds; None raises TypeError with `none_message`, as asyncio.
fn seconds(value: &Bound<'_, PyAny>, none_message: &'static str) -> PyResult<f64> {
    if value.is_none() {
        return Err(PyTypeError::new_err(none_message));
    }
    value.extract()
}

/// An OSError built as `OSError(errno, strerror)`, so that Python picks the subclass
/// (ConnectionRefusedError, ...) and `.errno` is set, as for errors raised by `socket`.
pub fn os_error(err: std::io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(code) => {
            let message = std::io::Error::from_raw_os_error(code).to_string();
            let message = message
                .split(" (os error")
                .next()
                .unwrap_or(&message)
                .to_owned();
            PyOSError::new_err((code, message))
        }
        None => PyOSError::new_err(err.to_string()),
    }
}

/// A ready entry being dispatched: derefs to it, and releases its handle with a plain decref
/// when dropped (dropping a `Py` first asks a thread-local whether the GIL is held).
struct Dispatching<'py> {
    ready: Option<Ready>,
    py: Python<'py>,
    /// Where a spent `call_soon` handle goes back to.
    pool: &'py HandlePool,
}

impl<'py> Dispatching<'py> {
    fn new(ready: Ready, py: Python<'py>, pool: &'py HandlePool) -> Self {
        Dispatching {
            ready: Some(ready),
            py,
            pool,
        }
    }
}

impl std::ops::Deref for Dispatching<'_> {
    type Target = Ready;

    #[inline]
    fn deref(&self) -> &Ready {
        self.ready.as_ref().expect("taken only on drop")
    }
}

impl Drop for Dispatching<'_> {
    fn drop(&mut self) {
        if let Some(ready) = self.ready.take() {
            match ready.entry {
                Entry::Soon(h) if ready.kind != Kind::Io => self.pool.give_back(self.py, h),
                Entry::Soon(h) => h.drop_ref(self.py),
                Entry::Timer(h) => {
                    TimerHandle::track_if_held(&h);
                    h.drop_ref(self.py)
                }
            }
        }
    }
}

/// Clears a one-shot handle's callable when dropped: at the end of its dispatch.
struct Spent<'a, 'py> {
    callback: Option<&'a Callback>,
    py: Python<'py>,
}

impl Drop for Spent<'_, '_> {
    fn drop(&mut self) {
        if let Some(callback) = self.callback {
            callback.clear(self.py);
        }
    }
}

static EXTRACT_STACK: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

/// Debug mode: where a handle was created, as asyncio's `format_helpers.extract_stack` gives
/// it (the innermost frame is the Python code that called `call_soon`/`call_later`/...).
fn source_traceback(py: Python<'_>) -> Option<Py<PyAny>> {
    let extract = EXTRACT_STACK
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import(intern!(py, "asyncio.format_helpers"))?
                    .getattr(intern!(py, "extract_stack"))?
                    .unbind(),
            )
        })
        .ok()?;
    let frame = py
        .import(intern!(py, "sys"))
        .and_then(|sys| sys.call_method1(intern!(py, "_getframe"), (0,)))
        .ok()?;
    extract.bind(py).call1((frame,)).ok().map(Bound::unbind)
}

/// A histogram as `(count, sum_ns, max_ns, min_ns, counts)`, the counts as native-endian u64
/// bytes.
fn histogram_raw<'py>(py: Python<'py>, h: &Histogram) -> (u64, u64, u64, u64, Bound<'py, PyBytes>) {
    let count = h.count();
    let min = if count == 0 { 0 } else { h.min_ns };
    (
        count,
        h.sum_ns,
        h.max_ns,
        min,
        PyBytes::new(py, &h.counts_bytes()),
    )
}

/// `_histogram_of(values_ns)`: the native histogram of the given values, in the raw form
/// snapshots carry (for tests of the recording and of the Python side's percentiles).
#[pyfunction]
pub fn _histogram_of<'py>(
    py: Python<'py>,
    values_ns: Vec<u64>,
) -> (u64, u64, u64, u64, Bound<'py, PyBytes>) {
    let mut h = Histogram::default();
    for v in values_ns {
        h.record(v);
    }
    histogram_raw(py, &h)
}

/// A duration option in seconds: a real number, not negative, not NaN.
fn duration_ns(value: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a number of seconds or None, not bool"
        )));
    }
    let seconds: f64 = value.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a number of seconds or None, not {}",
            value
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    if seconds.is_nan() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{name} must be >= 0 seconds, got {seconds}"
        )));
    }
    // `as` saturates: an infinite duration is u64::MAX, i.e. never reached.
    Ok((seconds * 1e9) as u64)
}

/// A count option: an int of at least 1.
fn positive_count(value: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int, not bool"
        )));
    }
    let n: i64 = value
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be an int")))?;
    if n < 1 {
        return Err(PyValueError::new_err(format!(
            "{name} must be at least 1, got {n}"
        )));
    }
    Ok(n as usize)
}

impl Loop {
    #[inline]
    fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Relaxed) {
            Err(PyRuntimeError::new_err("Event loop is closed"))
        } else {
            Ok(())
        }
    }

    /// The checks asyncio makes before scheduling: a closed loop, then (in debug mode, through
    /// asyncio's own helpers) the calling thread and the callback's kind.
    fn check_schedule(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        method: &str,
        check_thread: bool,
    ) -> PyResult<()> {
        let this = slf.get();
        this.check_closed()?;
        if this.debug.load(Relaxed) {
            if check_thread {
                slf.call_method0(intern!(slf.py(), "_check_thread"))?;
            }
            slf.call_method1(intern!(slf.py(), "_check_callback"), (callback, method))?;
        } else if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "a callable object was expected by {method}(), got {}",
                callback.repr()?
            )));
        }
        Ok(())
    }

    fn new_callback(
        &self,
        py: Python<'_>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Callback> {
        let mut inner = Callback::new(
            callback.unbind(),
            args.unbind(),
            context::resolve_for_handle(py, context)?,
            self.slot.0,
        );
        if self.debug.load(Relaxed) {
            inner.source_traceback = source_traceback(py);
        }
        Ok(inner)
    }

    fn schedule_at(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        method: &str,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let this = slf.get();
        Self::check_schedule(slf, &callback, method, true)?;
        let inner = this.new_callback(py, callback, args, context.as_ref())?;
        inner.set_queued(true);
        let handle = Py::new(py, TimerHandle { inner, when })?;
        if this.running.load(Relaxed) {
            TimerHandle::untrack(&handle);
            this.untracked_timers.store(true, Relaxed);
        }
        this.core
            .lock(py)
            .timers
            .push(seconds_to_deadline_ns(when), handle.clone_ref(py));
        Ok(handle)
    }

    pub(crate) fn transport_opened(&self) {
        self.open_transports.fetch_add(1, Relaxed);
    }

    pub(crate) fn transport_closed(&self) {
        let _ = self
            .open_transports
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    /// Handles still to run: ready (including this iteration's rest) and scheduled, without
    /// the cancelled ones.
    fn pending_count(&self, py: Python<'_>, batch_rest: usize) -> usize {
        let core = self.core.lock(py);
        let queued = batch_rest + core.ready.len() + core.timers.len();
        let cancelled = self.counts.ready.load(Relaxed) + self.counts.timers.load(Relaxed);
        queued.saturating_sub(cancelled)
    }

    /// Milliseconds to wait for I/O: 0 while work is ready, until the next timer otherwise.
    fn wait_timeout_ms(&self, py: Python<'_>) -> i32 {
        if self.stopping.load(Relaxed) {
            return 0;
        }
        let (timeout, dropped) = {
            let mut core = self.core.lock(py);
            if !core.ready.is_empty() {
                return 0;
            }
            let mut dropped = Vec::new();
            let next = core
                .timers
                .next_deadline(|h| h.get().inner.is_cancelled(), |h| dropped.push(h));
            let timeout = match next {
                None => -1,
                Some(deadline) => {
                    let wait_ns = deadline.saturating_sub(monotonic_ns());
                    wait_ns.div_ceil(1_000_000).min(MAX_WAIT_MS) as i32
                }
            };
            (timeout, dropped)
        };
        self.forget_timers(dropped);
        timeout
    }

    /// Waits for I/O (GIL released) and runs what libuv has, or skips the poll while work is
    /// ready and the last one is recent.
    fn poll_io(slf: &Bound<'_, Self>, timeout_ms: i32) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // "Now" is the latest tick read (at most one iteration old); 0: not polled this run.
        let last_poll = this.last_poll_tick.load(Relaxed);
        if timeout_ms == 0
            && last_poll != 0
            && ticks_to_ns(last_poll, this.last_tick.load(Relaxed)) < IO_POLL_INTERVAL_NS
        {
            return Ok(());
        }
        let signal_fd = this.signal_fd.load(Relaxed);
        // Out of its cell while the GIL may be released: libuv runs on this thread alone.
        let mut uv = (this.uv.lock(py).take())
            .ok_or_else(|| PyRuntimeError::new_err("Event loop is closed"))?;
        let blocked_since = (timeout_ms != 0).then(tick);
        let ran = uv
            .event_loop
            .set_signal_fd(signal_fd)
            .map(|()| match blocked_since {
                None => uv.event_loop.run_nowait(),
                Some(_) => py.allow_threads(|| uv.event_loop.run_once(timeout_ms)),
            });
        let polled = tick();
        this.last_poll_tick.store(polled, Relaxed);
        this.last_tick.store(polled, Relaxed);
        this.handles.trim(py, polled);
        if let Some(since) = blocked_since {
            this.aggregates.get(py).borrow_mut().metrics.idle_ns += ticks_to_ns(since, polled);
        }
        let signals = uv.event_loop.take_signal();
        let mut fired = std::mem::take(&mut uv.fired);
        uv.watchers.fired(&mut uv.event_loop, py, &mut fired);
        *this.uv.lock(py) = Some(uv);
        ran.map_err(os_error)?;
        let queued = Self::queue_fired(slf, &mut fired);
        if let Some(uv) = this.uv.lock(py).as_mut() {
            uv.fired = fired;
        }
        queued?;
        if signals {
            if signal_fd >= 0 {
                slf.call_method0(intern!(py, "_read_signal_fd"))?;
            }
            py.check_signals()?;
        }
        Ok(())
    }

    /// Queues the reader/writer handles I/O made runnable, lag counted from the poll's return.
    /// Empties `fired` (keeping its allocations).
    fn queue_fired(slf: &Bound<'_, Self>, fired: &mut Fired) -> PyResult<()> {
        let this = slf.get();
        // Drained even when a removal fails (the drain drops what is left): nothing stale is
        // left for the next poll.
        let removed = (fired.cancelled.drain(..))
            .try_for_each(|(fd, which)| Self::remove_watcher(slf, fd, which).map(drop));
        if let Err(err) = removed {
            fired.runnable.clear();
            return Err(err);
        }
        if fired.runnable.is_empty() {
            return Ok(());
        }
        let polled = this.last_poll_tick.load(Relaxed);
        let mut core = this.core.lock(slf.py());
        for handle in fired.runnable.drain(..) {
            if handle.get().inner.is_queued() {
                // Still waiting from an earlier poll (an interrupted batch): once is enough.
                continue;
            }
            handle.get().inner.set_queued(true);
            core.ready.push_back(Ready {
                entry: Entry::Soon(handle),
                ready_tick: polled,
                late_ns: 0,
                kind: Kind::Io,
            });
        }
        Ok(())
    }

    fn add_watcher(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        which: i32,
    ) -> PyResult<Py<Handle>> {
        let method = if which == READABLE {
            "add_reader"
        } else {
            "add_writer"
        };
        Self::check_schedule(slf, &callback, method, false)?;
        Self::watch_fd(slf, fileobj_to_fd(fd)?, callback, args, which, None)
    }

    /// Registers `callback(*args)` as the reader or writer of `fd` (no argument checks), run
    /// in `context` (None: a copy of the current one).
    pub(crate) fn watch_fd(
        slf: &Bound<'_, Self>,
        fd: i32,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        which: i32,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        let inner = this.new_callback(py, callback, args, context)?;
        let handle = Py::new(py, Handle { inner })?;
        let replaced = {
            let mut uv = this.uv.lock(py);
            let uv = uv
                .as_mut()
                .ok_or_else(|| PyRuntimeError::new_err("Event loop is closed"))?;
            let Uv {
                watchers,
                event_loop,
                ..
            } = &mut **uv;
            watchers.set(event_loop, fd, which, handle.clone_ref(py))
        };
        match replaced {
            Ok(Some(old)) => old.get().cancel_now(py),
            Ok(None) => {}
            Err(err) => return Err(os_error(err)),
        }
        Ok(handle)
    }

    pub(crate) fn remove_watcher(slf: &Bound<'_, Self>, fd: i32, which: i32) -> PyResult<bool> {
        let this = slf.get();
        let py = slf.py();
        let removed = match this.uv.lock(py).as_mut() {
            Some(uv) => uv.watchers.remove(&mut uv.event_loop, fd, which),
            None => Vec::new(),
        };
        // Cancelled and dropped here, outside the borrow: a last reference may run Python code.
        for handle in &removed {
            handle.get().cancel_now(py);
        }
        Ok(!removed.is_empty())
    }

    /// The callable of `fd`'s reader, if it has one.
    pub(crate) fn reader_callback(slf: &Bound<'_, Self>, fd: i32) -> Option<Py<PyAny>> {
        let py = slf.py();
        let (_, reader, _) = slf.get().uv.lock(py).as_ref()?.watchers.state(py, fd)?;
        reader?.get().inner.parts(py).map(|p| p.callback)
    }

    /// `call_soon(callback, *args, context=None)` (the method itself is `fastcall::call_soon`).
    pub(crate) fn call_soon_impl(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::check_schedule(slf, &callback, "call_soon", true)?;
        Self::soon(slf, callback, args, context.as_ref(), Kind::Callback)
    }

    /// `call_soon_threadsafe(callback, *args, context=None)` (the method itself is
    /// `fastcall::call_soon_threadsafe`). Safe from any thread: the handle joins the ready
    /// queue and a libuv async handle wakes the loop.
    pub(crate) fn call_soon_threadsafe_impl(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::check_schedule(slf, &callback, "call_soon_threadsafe", false)?;
        // The ready queue is guarded by the GIL, which any calling thread holds: the handle
        // keeps its place among call_soon's (FIFO across threads, as asyncio's deque append).
        let handle = Self::soon(slf, callback, args, context.as_ref(), Kind::Threadsafe)?;
        slf.get().waker.wake();
        Ok(handle)
    }

    /// `call_later(delay, callback, *args, context=None)` (`fastcall::call_later`).
    pub(crate) fn call_later_impl(
        slf: &Bound<'_, Self>,
        delay: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let when = monotonic_ns() as f64 * 1e-9 + seconds(delay, "delay must not be None")?;
        Self::schedule_at(slf, when, callback, args, context, "call_later")
    }

    /// `call_at(when, callback, *args, context=None)` (`fastcall::call_at`).
    pub(crate) fn call_at_impl(
        slf: &Bound<'_, Self>,
        when: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let when = seconds(when, "when cannot be None")?;
        Self::schedule_at(slf, when, callback, args, context, "call_at")
    }

    /// The loop's clock: seconds of the monotonic clock, as `time.monotonic()`
    /// (`fastcall::time`).
    pub(crate) fn time(&self) -> f64 {
        monotonic_ns() as f64 * 1e-9
    }

    /// asyncio's `create_future`, without a Python frame (`fastcall::create_future`).
    pub(crate) fn create_future(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let future = ASYNCIO_FUTURE.get_or_try_init(py, || asyncio_attr(py, "Future"))?;
        let names = loop_keyword(py).bind(py);
        Ok(context::call_with_keywords(future.bind(py), &[], names, &[slf.as_any()])?.unbind())
    }

    /// `get_debug()` (`fastcall::get_debug`): asked by every Future and Task asyncio makes.
    pub(crate) fn get_debug(&self) -> bool {
        self.debug.load(Relaxed)
    }

    /// Moves expired timers to the ready queue and takes the batch this iteration runs.
    fn take_batch(&self, py: Python<'_>) -> VecDeque<Ready> {
        let mut dropped = Vec::new();
        let batch = {
            let mut core = self.core.lock(py);
            let (now, now_tick) = if core.timers.len() > 0 {
                let pair = (monotonic_ns(), tick());
                self.aggregates.get(py).borrow_mut().time_ref = pair;
                pair
            } else {
                (0, 0)
            };
            while let Some(entry) = core.timers.pop_expired(now) {
                let handle = entry.item;
                if handle.get().inner.is_cancelled() {
                    dropped.push(handle);
                } else {
                    core.ready.push_back(Ready {
                        entry: Entry::Timer(handle),
                        ready_tick: now_tick,
                        late_ns: now.saturating_sub(entry.deadline_ns),
                        kind: Kind::Timer,
                    });
                }
            }
            let cancelled = self.counts.timers.load(Relaxed);
            core.timers.maybe_compact(
                cancelled,
                |h| h.get().inner.is_cancelled(),
                |h| dropped.push(h),
            );
            let spare = core.spare.take().unwrap_or_default();
            std::mem::replace(&mut core.ready, spare)
        };
        self.forget_timers(dropped);
        batch
    }

    /// Appends `callback(*args)` to the ready queue (no argument checks).
    pub(crate) fn soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
        kind: Kind,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        let handle = if this.debug.load(Relaxed) {
            let inner = this.new_callback(py, callback, args, context)?;
            inner.set_queued(true);
            Py::new(py, Handle { inner })?
        } else {
            let context = context::resolve_for_handle(py, context)?;
            this.handles
                .take(py, callback.unbind(), args.unbind(), context, this.slot.0)?
        };
        // From a callback, it can first run when that callback ends: the dispatch stamps it
        // then. Other threads (call_soon_threadsafe) and signals read the clock now.
        let ready_tick = if kind == Kind::Callback && this.in_dispatch.load(Relaxed) {
            this.unstamped.store(true, Relaxed);
            UNSTAMPED
        } else {
            tick()
        };
        let ready = Ready {
            entry: Entry::Soon(handle.clone_ref(py)),
            ready_tick,
            late_ns: 0,
            kind,
        };
        this.core.lock(py).ready.push_back(ready);
        Ok(handle)
    }

    /// Forgets cancelled timers taken out of the heap. Called outside the core lock: releasing
    /// the last reference to a handle may run arbitrary Python code.
    ///
    /// Nearly every iteration has nothing to forget: an empty vector, which never allocated,
    /// costs one check here instead of a call and a call to its drop glue.
    #[inline(always)]
    fn forget_timers(&self, dropped: Vec<Py<TimerHandle>>) {
        if dropped.capacity() == 0 {
            // Holds no element and no allocation: nothing to release.
            std::mem::forget(dropped);
        } else {
            self.forget_timer_handles(dropped);
        }
    }

    #[cold]
    fn forget_timer_handles(&self, dropped: Vec<Py<TimerHandle>>) {
        for handle in dropped {
            handle.get().inner.set_queued(false);
            CancelCounts::forget(&self.counts.timers);
            TimerHandle::track_if_held(&handle);
        }
    }

    /// The loop stopped: its timer handles, untracked while it ran, are tracked again, so the
    /// collector sees them (and what they hold) through the loop's traversal.
    fn track_timers(&self, py: Python<'_>) {
        if !self.untracked_timers.swap(false, Relaxed) {
            return;
        }
        let core = self.core.lock(py);
        for handle in core.timers.iter() {
            TimerHandle::track(handle);
        }
        for ready in core.ready.iter() {
            if let Entry::Timer(handle) = &ready.entry {
                TimerHandle::track(handle);
            }
        }
    }

    /// Stamps the entries a callback queued (at the back of the ready queue) with the tick its
    /// dispatch ended at.
    fn stamp_queued(&self, py: Python<'_>, ended: u64) {
        self.unstamped.store(false, Relaxed);
        let mut core = self.core.lock(py);
        // By index from the back: usually one entry, and a deque's reverse iterator costs more
        // to set up than that.
        let ready = &mut core.ready;
        let mut at = ready.len();
        while at > 0 {
            at -= 1;
            let entry = &mut ready[at];
            if entry.ready_tick != UNSTAMPED {
                break;
            }
            entry.ready_tick = ended;
        }
    }

    fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let timeout = this.wait_timeout_ms(slf.py());
        Self::poll_io(slf, timeout)?;
        let mut batch = this.take_batch(slf.py());
        this.in_dispatch.store(true, Relaxed);
        let outcome = Self::dispatch(slf, &mut batch);
        this.in_dispatch.store(false, Relaxed);
        if this.unstamped.load(Relaxed) {
            this.stamp_queued(slf.py(), tick());
        }
        let mut core = this.core.lock(slf.py());
        if !batch.is_empty() {
            // Interrupted (KeyboardInterrupt/SystemExit): what did not run stays first in line.
            while let Some(rest) = batch.pop_back() {
                core.ready.push_front(rest);
            }
        }
        // Replaces None: no drop glue for an empty queue on every iteration.
        core.spare = Some(batch);
        outcome
    }

    /// Runs each handle of the batch in its context, timing it: into the aggregates, the busy
    /// time of what ran, the slow-callback ring when it took long, and the monitor callback.
    fn dispatch(slf: &Bound<'_, Self>, batch: &mut VecDeque<Ready>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let monitor = if this.has_monitor.load(Relaxed) {
            this.monitor.lock(py).as_ref().map(|m| m.clone_ref(py))
        } else {
            None
        };
        let report_ns = this.monitor_min_wall_ns.load(Relaxed);
        let slow_ns = this.slow_threshold_ns.load(Relaxed);
        let debug = this.debug.load(Relaxed);
        let aggregates = this.aggregates.get(py);
        let aggregating = this.aggregating.load(Relaxed);
        aggregates.borrow_mut().metrics.iterations += 1;
        let mut outcome = Ok(());
        let mut start = tick();
        while let Some(ready) = batch.pop_front() {
            let ready = Dispatching::new(ready, py, &this.handles);
            let cb = ready.entry.callback();
            cb.set_queued(false);
            if cb.is_cancelled() {
                ready.entry.forget_cancelled(&this.counts);
                continue;
            }
            let Some(Parts { callback, args }) = cb.parts(py) else {
                continue;
            };
            // One-shot handles give up their callable once their dispatch is over (however it
            // ends), so no cycle through a handle outlives its run: handles are not tracked by
            // the collector. fd watchers run again.
            let _spent = Spent {
                callback: (ready.kind != Kind::Io).then_some(cb),
                py,
            };
            // Bound: released with a plain decref, no check for the GIL.
            let (callback, args) = (callback.into_bound(py), args.into_bound(py));
            let key = if aggregating {
                Key::of(&callback)
            } else {
                Key::NONE
            };
            let resume = match &key.task {
                Some(task) if aggregates.borrow_mut().top.take_watch(key.id) => {
                    let noted = slow::resume_point(task);
                    // Noting it ran Python code: not part of the step's wall time.
                    start = tick();
                    noted
                }
                _ => None,
            };
            this.probe.enter(start);
            let result = this.empty_context.run_handle(py, cb, &callback, &args);
            let end = tick();
            if this.unstamped.load(Relaxed) {
                this.stamp_queued(py, end);
            }
            let watchdog_reported = this.probe.exit();
            let wall_ns = ticks_to_ns(start, end);
            if watchdog_reported {
                Self::watchdog_finished(slf, wall_ns);
            }
            // Still unstamped only if another thread queued it among a callback's entries.
            let lag_ns = match ready.ready_tick {
                UNSTAMPED => ready.late_ns,
                queued => ticks_to_ns(queued, start) + ready.late_ns,
            };
            let counted = !aggregating || {
                let mut agg = aggregates.borrow_mut();
                agg.metrics
                    .record(ready.kind, wall_ns, lag_ns, result.is_err());
                agg.top.add(key.id, wall_ns)
            };
            if !counted {
                Self::count_new_callee(aggregates, &key, &callback, wall_ns);
            }
            let mut resync = false;
            if wall_ns >= slow_ns {
                let recorded = Self::record_slow(
                    this, py, &ready, &callback, &key, resume, start, wall_ns, lag_ns,
                );
                resync = true;
                if let Err(fatal) = recorded {
                    outcome = Err(fatal);
                    break;
                }
            }
            if let Some(monitor) = monitor.as_ref().filter(|_| wall_ns >= report_ns) {
                let count = this.pending_count(py, batch.len());
                // Converted to `loop.time()` only if the monitor reads it.
                let started_at = StartedAt::Tick(start, aggregates.borrow().time_ref);
                let reported = this.reporter.report(
                    py,
                    monitor,
                    callback.clone().unbind(),
                    ready.kind,
                    wall_ns,
                    count,
                    lag_ns,
                    started_at,
                );
                resync = true;
                if let Err(fatal) = reported {
                    outcome = Err(fatal);
                    break;
                }
            }
            let failure = result.err().map(|err| {
                let source = format_callback(py, callback.as_unbound(), args.as_unbound());
                (err, source)
            });
            if debug {
                Self::warn_if_slow(slf, &ready.entry, wall_ns);
                resync = true;
            }
            if let Some((err, source)) = failure {
                if is_fatal(py, &err) {
                    outcome = Err(err);
                    break;
                }
                if let Err(err) = Self::report_exception(slf, &ready.entry, err, source) {
                    outcome = Err(err);
                    break;
                }
                resync = true;
            }
            start = if resync { tick() } else { end };
        }
        this.last_tick.store(start, Relaxed);
        outcome
    }

    /// The first dispatch of a callable since it was (last) tracked: it gets an entry, named by
    /// its code object, or by a name computed now for callables without one.
    fn count_new_callee(
        aggregates: &RefCell<Aggregates>,
        key: &Key<'_>,
        callback: &Bound<'_, PyAny>,
        wall_ns: u64,
    ) {
        let namer = match &key.code {
            Some(code) => slow::code_namer(callback, key.task.as_ref(), code),
            None => slow::pretty_name(callback),
        };
        let evicted = aggregates.borrow_mut().top.insert(key.id, wall_ns, namer);
        // Released once the aggregates are no longer borrowed.
        drop(evicted);
    }

    /// Records a slow dispatch; only KeyboardInterrupt/SystemExit (raised by a logging handler,
    /// say) come out of it, anything else is not allowed to disturb the loop.
    #[allow(clippy::too_many_arguments)]
    fn record_slow(
        &self,
        py: Python<'_>,
        ready: &Ready,
        callback: &Bound<'_, PyAny>,
        key: &Key<'_>,
        resume: Option<Py<PyAny>>,
        start: u64,
        wall_ns: u64,
        lag_ns: u64,
    ) -> PyResult<()> {
        let started_at = self.loop_time_of(py, start);
        let described = slow::describe(
            py,
            callback,
            ready.kind.name(),
            wall_ns,
            lag_ns,
            started_at,
            resume,
        );
        match described {
            Ok(slow::Described { record, count_name }) => {
                let dropped = {
                    let mut agg = self.aggregates.get(py).borrow_mut();
                    if key.task.is_some() {
                        agg.top.watch(key.id);
                    }
                    agg.slow.push(record, count_name)
                };
                drop(dropped);
                Ok(())
            }
            Err(err) if is_fatal(py, &err) => Err(err),
            Err(err) => {
                err.write_unraisable(py, Some(callback));
                Ok(())
            }
        }
    }

    /// A dispatch the watchdog reported has ended: its report gains the final wall time.
    fn watchdog_finished(slf: &Bound<'_, Self>, wall_ns: u64) {
        let py = slf.py();
        let Some(seq) = slf.get().probe.take_reported() else {
            return;
        };
        let finished = slf.getattr(intern!(py, "_watchdog")).and_then(|watch| {
            if watch.is_none() {
                return Ok(());
            }
            watch.call_method1(intern!(py, "_finished"), (seq, wall_ns as f64 * 1e-9))?;
            Ok(())
        });
        if let Err(err) = finished {
            err.write_unraisable(py, Some(slf.as_any()));
        }
    }

    /// `loop.time()` at which the tick `at` was read.
    fn loop_time_of(&self, py: Python<'_>, at: u64) -> f64 {
        loop_time_at(at, self.aggregates.get(py).borrow().time_ref)
    }

    fn report_exception(
        slf: &Bound<'_, Self>,
        entry: &Entry,
        err: PyErr,
        source: String,
    ) -> PyResult<()> {
        let py = slf.py();
        let context = PyDict::new(py);
        context.set_item("message", format!("Exception in callback {source}"))?;
        context.set_item("exception", err.value(py))?;
        context.set_item("handle", entry.as_any(py))?;
        if let Some(tb) = &entry.callback().source_traceback {
            context.set_item("source_traceback", tb)?;
        }
        slf.call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    }

    /// Debug mode's "Executing <Handle ...> took 0.123 seconds" warning.
    fn warn_if_slow(slf: &Bound<'_, Self>, entry: &Entry, wall_ns: u64) {
        let py = slf.py();
        let _ = (|| -> PyResult<()> {
            let threshold: f64 = slf
                .getattr(intern!(py, "slow_callback_duration"))?
                .extract()?;
            let seconds = wall_ns as f64 * 1e-9;
            if seconds >= threshold {
                // asyncio's own formatting: a task step shows as the task ("<Task pending
                // name='Task-3' coro=<handler() running at app.py:41>>"), not its wrapper.
                let shown = py
                    .import(intern!(py, "asyncio.base_events"))?
                    .call_method1(intern!(py, "_format_handle"), (entry.as_any(py),))?;
                py.import(intern!(py, "asyncio.log"))?
                    .getattr(intern!(py, "logger"))?
                    .call_method1(
                        intern!(py, "warning"),
                        ("Executing %s took %.3f seconds", shown, seconds),
                    )?;
            }
            Ok(())
        })();
    }
}

#[pymethods]
impl Loop {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let counts = Arc::new(CancelCounts::default());
        let slot = Registered(LoopSlot::register(py, &counts));
        let event_loop = uv_sys::Loop::new().map_err(os_error)?;
        let waker = event_loop.waker();
        // Paid here, not inside a timed dispatch, and without holding up other threads.
        calibrate(py);
        Ok(Loop {
            core: GilCell::new(Core::default()),
            uv: GilCell::new(Some(Box::new(Uv {
                watchers: Watchers::default(),
                event_loop,
                fired: Fired::default(),
            }))),
            waker,
            counts,
            slot,
            running: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            has_task_factory: AtomicBool::new(false),
            monitor: GilCell::new(None),
            has_monitor: AtomicBool::new(false),
            reporter: Reporter::default(),
            monitor_min_wall_ns: AtomicU64::new(0),
            slow_threshold_ns: AtomicU64::new(DEFAULT_SLOW_THRESHOLD_NS),
            aggregates: GILProtected::new(RefCell::new(Aggregates {
                time_ref: (monotonic_ns(), tick()),
                ..Aggregates::default()
            })),
            probe: Arc::new(Probe::default()),
            aggregating: AtomicBool::new(true),
            open_transports: AtomicUsize::new(0),
            signal_fd: AtomicI32::new(-1),
            last_poll_tick: AtomicU64::new(0),
            last_tick: AtomicU64::new(0),
            untracked_timers: AtomicBool::new(false),
            in_dispatch: AtomicBool::new(false),
            unstamped: AtomicBool::new(false),
            empty_context: EmptyContext::default(),
            handles: HandlePool::default(),
        })
    }

    /// asyncio's `_add_reader`: `callback(*args)` whenever `fd` is readable; replaces (and
    /// cancels) a previous reader of the same descriptor.
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::add_watcher(slf, fd, callback, args, READABLE)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::add_watcher(slf, fd, callback, args, WRITABLE)
    }

    /// True if `fd` had a reader (now removed and cancelled).
    fn _remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        if slf.get().closed.load(Relaxed) {
            return Ok(false);
        }
        Self::remove_watcher(slf, fileobj_to_fd(fd)?, READABLE)
    }

    fn _remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        if slf.get().closed.load(Relaxed) {
            return Ok(false);
        }
        Self::remove_watcher(slf, fileobj_to_fd(fd)?, WRITABLE)
    }

    /// `sock_recv`'s native path (see `sock_ops`): the data, or a future to await, or None
    /// for asyncio's path.
    fn _sock_recv_native(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        n: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        crate::sock_ops::sock_recv(slf, sock, n)
    }

    /// `sock_sendall`'s first send, natively (see `sock_ops::sock_send`).
    #[staticmethod]
    fn _sock_send_native(
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Option<isize>> {
        crate::sock_ops::sock_send(sock, data)
    }

    /// The coroutine awaiting a native `sock_recv`'s future ended without it.
    fn _sock_recv_abandoned(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        future: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        crate::sock_ops::sock_recv_abandoned(slf, sock, future)
    }

    /// `(events, reader, writer)` watched on `fd` (selectors' EVENT_READ/EVENT_WRITE bits), or
    /// None.
    #[allow(clippy::type_complexity)]
    fn _io_watch_state(
        &self,
        py: Python<'_>,
        fd: i32,
    ) -> Option<(i32, Option<Py<Handle>>, Option<Py<Handle>>)> {
        self.uv.lock(py).as_ref()?.watchers.state(py, fd)
    }

    /// Pending handles often lead back to the loop (a task step holds its task, which holds
    /// the loop): the collector must see what they hold, or an unclosed loop would never be
    /// freed. Timer handles are tracked and visited; `Handle`s are not tracked (see
    /// `handles.rs`): the loop shows their contents while it is their only holder.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // A running loop is alive, and so is everything its queues hold (it will run): the
        // collector loses nothing by not seeing those edges (it then counts them as outside
        // references, which keeps their targets), and a collection does not walk a long queue.
        // A loop that is not running shows them, so an abandoned loop's cycles are collected.
        let core = if self.running.load(Relaxed) {
            None
        } else {
            self.core.for_traverse(&visit)
        };
        if let Some(core) = core {
            for ready in core.ready.iter().chain(core.spare.iter().flatten()) {
                match &ready.entry {
                    Entry::Soon(h) => h.get().inner.visit_if_owned(refs_in_traverse(h), &visit)?,
                    Entry::Timer(h) => visit.call(h)?,
                }
            }
            for timer in core.timers.iter() {
                visit.call(timer)?;
            }
        }
        if let Some(monitor) = self.monitor.for_traverse(&visit) {
            visit.call(&*monitor)?;
        }
        if let Some(uv) = self.uv.for_traverse(&visit) {
            if let Some(uv) = uv.as_ref() {
                uv.watchers.traverse(&visit)?;
            }
        }
        Ok(())
    }

    /// asyncio's `create_task`: the common case (no task factory, not in debug mode) builds the
    /// Task here; anything else goes to asyncio's own implementation. Whether a factory is set
    /// is a native flag the Python side keeps (`_task_factory`'s setter): reading the attribute
    /// would cost more than the rest of this path.
    #[pyo3(signature = (coro, *, name=None, context=None))]
    fn create_task(
        slf: &Bound<'_, Self>,
        coro: Bound<'_, PyAny>,
        name: Option<Bound<'_, PyAny>>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let takes_context = *TASK_TAKES_CONTEXT.get_or_init(py, || py.version_info() >= (3, 11));
        let simple = !this.debug.load(Relaxed)
            && !this.has_task_factory.load(Relaxed)
            && (context.is_none() || takes_context);
        if simple {
            let task = ASYNCIO_TASK.get_or_try_init(py, || asyncio_attr(py, "Task"))?;
            // Task(coro, loop=) alone in the common case; otherwise name= and context= too,
            // None being each one's default (context= only on 3.11+, where `simple` lets one
            // through).
            let none = py.None().into_bound(py);
            let values = [
                slf.as_any(),
                name.as_ref().unwrap_or(&none),
                context.as_ref().unwrap_or(&none),
            ];
            let names = if name.is_none() && context.is_none() {
                loop_keyword(py)
            } else {
                TASK_KWNAMES.get_or_init(py, || {
                    let names: &[&str] = if takes_context {
                        &["loop", "name", "context"]
                    } else {
                        &["loop", "name"]
                    };
                    context::keyword_names(py, names).unbind()
                })
            };
            let names = names.bind(py);
            let task = task.bind(py);
            let made = context::call_with_keywords(task, &[&coro], names, &values[..names.len()]);
            return Ok(made?.unbind());
        }
        let kwargs = PyDict::new(py);
        if let Some(name) = &name {
            kwargs.set_item(intern!(py, "name"), name)?;
        }
        if let Some(context) = &context {
            kwargs.set_item(intern!(py, "context"), context)?;
        }
        let base = BASE_CREATE_TASK.get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import(intern!(py, "asyncio.base_events"))?
                    .getattr(intern!(py, "BaseEventLoop"))?
                    .getattr(intern!(py, "create_task"))?
                    .unbind(),
            )
        })?;
        Ok(base.bind(py).call((slf, coro), Some(&kwargs))?.unbind())
    }

    /// Ends the loop's wait from any thread (asyncio's `_write_to_self`).
    fn _write_to_self(&self) {
        self.waker.wake();
    }

    fn stop(&self) {
        self.stopping.store(true, Relaxed);
        // A stop from another thread must end the wait too.
        self.waker.wake();
    }

    fn is_running(&self) -> bool {
        self.running.load(Relaxed)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    fn _set_debug_native(&self, enabled: bool) {
        self.debug.store(enabled, Relaxed);
    }

    fn _set_task_factory_native(&self, set: bool) {
        self.has_task_factory.store(set, Relaxed);
    }

    fn _check_closed(&self) -> PyResult<()> {
        self.check_closed()
    }

    /// Runs iterations until `stop()`; the Python side does asyncio's setup around it.
    fn _run_native(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        this.check_closed()?;
        if this.running.swap(true, Relaxed) {
            return Err(PyRuntimeError::new_err(
                "This event loop is already running",
            ));
        }
        // The first iteration of a run always polls, as asyncio's does: a `run_until_complete`
        // of a future already done still runs the I/O that is ready.
        this.last_poll_tick.store(0, Relaxed);
        this.last_tick
            .store(IO_POLL_INTERVAL_NS.saturating_mul(1 << 8), Relaxed);
        let outcome = loop {
            if let Err(err) = Self::run_once(slf) {
                break Err(err);
            }
            if this.stopping.load(Relaxed) {
                break Ok(());
            }
        };
        this.stopping.store(false, Relaxed);
        this.running.store(false, Relaxed);
        this.track_timers(slf.py());
        outcome
    }

    /// Drops every pending handle and releases libuv; the Python side shuts the executor down.
    fn _close_native(&self, py: Python<'_>) -> PyResult<()> {
        if self.running.load(Relaxed) {
            return Err(PyRuntimeError::new_err("Cannot close a running event loop"));
        }
        if self.closed.swap(true, Relaxed) {
            return Ok(());
        }
        let (ready, timers): (Vec<Ready>, Vec<Py<TimerHandle>>) = {
            let mut core = self.core.lock(py);
            let ready = core.ready.drain(..).collect();
            let timers = core.timers.drain().collect();
            (ready, timers)
        };
        let mut uv = self.uv.lock(py).take();
        let watched = uv
            .as_mut()
            .map(|uv| uv.watchers.close_all(&mut uv.event_loop))
            .unwrap_or_default();
        // They will never run: what they hold goes now (a handle someone keeps must not keep a
        // cycle alive, as handles are not tracked by the collector). Outside the borrows:
        // dropping a last reference may run Python code.
        for r in &ready {
            r.entry.callback().clear(py);
        }
        for t in &timers {
            t.get().inner.clear(py);
        }
        for w in &watched {
            w.get().inner.clear(py);
        }
        drop((ready, timers, uv, watched));
        self.handles.clear(py);
        Ok(())
    }

    /// Sets (or with None, removes) the callable called with an `IoLoopMonitorState` after
    /// every dispatch.
    #[pyo3(signature = (monitor_callback))]
    fn set_monitor_callback(
        &self,
        py: Python<'_>,
        monitor_callback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let monitor = match monitor_callback {
            Some(m) if !m.is_none() => {
                if !m.is_callable() {
                    return Err(PyTypeError::new_err(
                        "monitor_callback must be callable or None",
                    ));
                }
                Some(m.unbind())
            }
            _ => None,
        };
        self.has_monitor.store(monitor.is_some(), Relaxed);
        let old = std::mem::replace(&mut *self.monitor.lock(py), monitor);
        drop(old);
        Ok(())
    }

    fn get_monitor_callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.monitor.lock(py).as_ref().map(|m| m.clone_ref(py))
    }

    /// Handles still pending (ready and scheduled, not cancelled).
    fn pending_handles_count(&self, py: Python<'_>) -> usize {
        self.pending_count(py, 0)
    }

    /// Totals over every dispatch so far, kept natively whether or not a monitor is set.
    fn dispatch_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (dispatches, errors, iterations, wall, lag) = {
            let agg = self.aggregates.get(py).borrow();
            let m = &agg.metrics;
            let (wall, lag) = m.overall();
            (m.dispatches(), m.errors(), m.iterations, wall, lag)
        };
        let d = PyDict::new(py);
        d.set_item("dispatches", dispatches)?;
        d.set_item("errors", errors)?;
        d.set_item("iterations", iterations)?;
        d.set_item("busy_time", wall.sum_ns as f64 * 1e-9)?;
        d.set_item("max_wall_time", wall.max_ns as f64 * 1e-9)?;
        d.set_item("total_lag", lag.sum_ns as f64 * 1e-9)?;
        d.set_item("max_lag", lag.max_ns as f64 * 1e-9)?;
        Ok(d)
    }

    /// The raw figures `monitored_ioloop.monitoring.LoopSnapshot` is built from, copied in one
    /// go between two dispatches.
    fn _monitor_raw<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (metrics, top, slow, slow_total, slow_counts) = {
            let agg = self.aggregates.get(py).borrow();
            let top: Vec<_> = agg
                .top
                .entries()
                .map(|e| (e.namer.clone_ref(py), e.count, e.busy_ns, e.max_ns))
                .collect();
            let slow: Vec<_> = agg.slow.records.iter().map(|r| r.clone_ref(py)).collect();
            (
                agg.metrics.clone(),
                top,
                slow,
                agg.slow.total,
                agg.slow.counts.clone(),
            )
        };
        let (pending_handles, pending_timers) = {
            let core = self.core.lock(py);
            (
                core.ready
                    .len()
                    .saturating_sub(self.counts.ready.load(Relaxed)),
                core.timers
                    .len()
                    .saturating_sub(self.counts.timers.load(Relaxed)),
            )
        };
        let io_watchers = self.uv.lock(py).as_ref().map_or(0, |uv| uv.watchers.len());
        let d = PyDict::new(py);
        d.set_item("timestamp", self.time())?;
        d.set_item("iterations", metrics.iterations)?;
        d.set_item("idle_ns", metrics.idle_ns)?;
        let kinds = PyList::empty(py);
        for kind in Kind::ALL {
            let k = &metrics.kinds[kind as usize];
            kinds.append((
                kind.name(),
                k.dispatches(),
                k.errors,
                histogram_raw(py, &k.wall),
                histogram_raw(py, &k.lag),
            ))?;
        }
        d.set_item("kinds", kinds)?;
        let (wall, lag) = metrics.overall();
        d.set_item("wall", histogram_raw(py, &wall))?;
        d.set_item("lag", histogram_raw(py, &lag))?;
        d.set_item("top", top)?;
        d.set_item("slow", slow)?;
        d.set_item("slow_total", slow_total)?;
        d.set_item("slow_counts", slow_counts)?;
        d.set_item("slow_threshold", self.slow_callback_threshold())?;
        d.set_item("pending_handles", pending_handles)?;
        d.set_item("pending_timers", pending_timers)?;
        d.set_item("io_watchers", io_watchers)?;
        d.set_item("open_transports", self.open_transports.load(Relaxed))?;
        Ok(d)
    }

    /// Seconds at or over which a dispatch is recorded as a slow callback (None: never).
    #[getter]
    fn slow_callback_threshold(&self) -> Option<f64> {
        match self.slow_threshold_ns.load(Relaxed) {
            u64::MAX => None,
            ns => Some(ns as f64 * 1e-9),
        }
    }

    #[setter]
    fn set_slow_callback_threshold(&self, seconds: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let ns = match seconds {
            None => u64::MAX,
            Some(s) if s.is_none() => u64::MAX,
            Some(s) => duration_ns(s, "slow_callback_threshold")?,
        };
        self.slow_threshold_ns.store(ns, Relaxed);
        Ok(())
    }

    /// How many slow callbacks are kept (the oldest are dropped first).
    #[getter]
    fn slow_callback_capacity(&self, py: Python<'_>) -> usize {
        self.aggregates.get(py).borrow().slow.capacity
    }

    #[setter]
    fn set_slow_callback_capacity(
        &self,
        py: Python<'_>,
        capacity: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let capacity = positive_count(capacity, "slow_callback_capacity")?;
        let dropped = self.aggregates.get(py).borrow_mut().slow.resize(capacity);
        drop(dropped);
        Ok(())
    }

    /// Dispatches shorter than this many seconds are not reported to the monitor callback
    /// (0: every dispatch is).
    #[getter]
    fn monitor_min_wall_time(&self) -> f64 {
        self.monitor_min_wall_ns.load(Relaxed) as f64 * 1e-9
    }

    #[setter]
    fn set_monitor_min_wall_time(&self, seconds: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let ns = match seconds {
            None => 0,
            Some(s) if s.is_none() => 0,
            Some(s) => duration_ns(s, "monitor_min_wall_time")?,
        };
        self.monitor_min_wall_ns.store(ns, Relaxed);
        Ok(())
    }

    /// Has the process's watchdog watch this loop's dispatches; returns the watch's id.
    fn _watchdog_watch(&self, threshold: f64) -> PyResult<u64> {
        watchdog::watch(self.probe.clone(), threshold)
    }

    fn _watchdog_unwatch(&self, watch_id: u64) {
        watchdog::unwatch(watch_id);
    }

    /// The number of the dispatch running now (0 between dispatches).
    fn _running_dispatch(&self) -> u64 {
        self.probe.running().map_or(0, |(seq, _)| seq)
    }

    /// `loop.time()` at which a tick (as the watchdog reports them) was read.
    fn _loop_time_of_tick(&self, py: Python<'_>, at: u64) -> f64 {
        self.loop_time_of(py, at)
    }

    /// How many spent handles the loop keeps for reuse (for tests).
    fn _spare_handles(&self, py: Python<'_>) -> usize {
        self.handles.len(py)
    }

    /// Turns the always-on aggregates off (or back on): only for measuring what they cost.
    fn _set_aggregating(&self, enabled: bool) {
        self.aggregating.store(enabled, Relaxed);
    }

    /// Queues a handler added with `add_signal_handler` (counted as a "signal" dispatch).
    #[pyo3(signature = (callback, *args, context=None))]
    fn _call_signal_handler(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        slf.get().check_closed()?;
        Self::soon(slf, callback, args, context.as_ref(), Kind::Signal)
    }

    /// The descriptor Python's `signal.set_wakeup_fd` writes to, watched while waiting (-1: none).
    fn _set_signal_fd(&self, fd: i32) {
        self.signal_fd.store(fd, Relaxed);
    }
}
