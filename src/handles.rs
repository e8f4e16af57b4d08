//! `Handle` and `TimerHandle`: the objects `call_soon`/`call_later` return, with asyncio's API
//! (`cancel`, `cancelled`, `when`, `get_context`, an asyncio-like `repr`), weakref-able.
//!
//! Both are frozen (no borrow flag on the dispatch path): the callback parts never change and
//! the two flags are atomics. `queued` says the handle still sits in the loop's ready queue or
//! timer heap, so a cancel can be counted there and the pending count stays exact.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyTuple;
use pyo3::intern;

/// Counts of cancelled handles still sitting in the loop's queues.
#[derive(Default)]
pub struct CancelCounts {
    pub ready: AtomicUsize,
    pub timers: AtomicUsize,
}

/// What a handle runs: `callback(*args)` inside `context`.
pub struct Callback {
    pub callback: Py<PyAny>,
    pub args: Py<PyTuple>,
    pub context: Py<PyAny>,
    cancelled: AtomicBool,
    queued: AtomicBool,
    counts: Arc<CancelCounts>,
}

impl Callback {
    pub fn new(
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Py<PyAny>,
        counts: Arc<CancelCounts>,
    ) -> Self {
        Callback {
            callback,
            args,
            context,
            cancelled: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            counts,
        }
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Relaxed)
    }

    #[inline]
    pub fn set_queued(&self, queued: bool) {
        self.queued.store(queued, Relaxed);
    }

    fn cancel(&self, counter: impl Fn(&CancelCounts) -> &AtomicUsize) {
        if !self.cancelled.swap(true, Relaxed) && self.queued.load(Relaxed) {
            counter(&self.counts).fetch_add(1, Relaxed);
        }
    }
}

static FORMAT_SOURCE: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

/// asyncio's own formatting of `callback(args) at file:line`, used by reprs and error messages.
pub fn format_callback(py: Python<'_>, callback: &Py<PyAny>, args: &Py<PyTuple>) -> String {
    let formatted = FORMAT_SOURCE
        .get_or_try_init(py, || {
            py.import(intern!(py, "asyncio.format_helpers"))?
                .getattr(intern!(py, "_format_callback_source"))
                .map(Bound::unbind)
        })
        .and_then(|f| f.bind(py).call1((callback.bind(py), args.bind(py))))
        .and_then(|s| s.extract::<String>());
    formatted.unwrap_or_else(|_| "<callback>".to_owned())
}

#[pyclass(module = "monitored_ioloop._native", frozen, weakref, freelist = 256)]
pub struct Handle {
    pub inner: Callback,
}

#[pymethods]
impl Handle {
    fn cancel(&self) {
        self.inner.cancel(|c| &c.ready);
    }

    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.context.clone_ref(py)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.callback.clone_ref(py)
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Py<PyTuple> {
        self.inner.args.clone_ref(py)
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.inner.is_cancelled() { " cancelled" } else { "" };
        let source = format_callback(py, &self.inner.callback, &self.inner.args);
        format!("<Handle{state} {source}>")
    }
}

#[pyclass(module = "monitored_ioloop._native", frozen, weakref, freelist = 64)]
pub struct TimerHandle {
    pub inner: Callback,
    pub when: f64,
}

#[pymethods]
impl TimerHandle {
    fn cancel(&self) {
        self.inner.cancel(|c| &c.timers);
    }

    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// The absolute time, in the loop's `time()` clock, the callback is scheduled for.
    fn when(&self) -> f64 {
        self.when
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.context.clone_ref(py)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.callback.clone_ref(py)
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Py<PyTuple> {
        self.inner.args.clone_ref(py)
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.inner.is_cancelled() { " cancelled" } else { "" };
        let source = format_callback(py, &self.inner.callback, &self.inner.args);
        format!("<TimerHandle{state} when={} {source}>", self.when)
    }
}
