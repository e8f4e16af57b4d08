//! `Handle` and `TimerHandle`: the objects `call_soon`/`call_later` return, with asyncio's API
//! (`cancel`, `cancelled`, `when`, `get_context`, an asyncio-like `repr`), weakref-able.
//!
//! Both are frozen (no borrow flag on the dispatch path): the callback parts never change and
//! the two flags are atomics. `queued` says the handle still sits in the loop's ready queue or
//! timer heap, so a cancel can be counted there and the pending count stays exact.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

/// Counts of cancelled handles still sitting in the loop's queues.
#[derive(Default)]
pub struct CancelCounts {
    pub ready: AtomicUsize,
    pub timers: AtomicUsize,
}

impl CancelCounts {
    /// One cancelled handle left its queue. Saturating: a count never wraps, whatever order
    /// cancels and removals came in.
    pub fn forget(counter: &AtomicUsize) {
        let _ = counter.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }
}

/// The callable and its arguments; dropped on `cancel()`, as asyncio does, so a cancelled
/// timer still waiting in the heap does not keep what its callback references alive.
pub struct Parts {
    pub callback: Py<PyAny>,
    pub args: Py<PyTuple>,
}

impl Parts {
    fn clone_ref(&self, py: Python<'_>) -> Parts {
        Parts {
            callback: self.callback.clone_ref(py),
            args: self.args.clone_ref(py),
        }
    }
}

/// What a handle runs: `callback(*args)` inside `context`.
///
/// `parts` is only ever locked to copy or take the references out (no Python code runs under
/// the lock, so no holder can wait for the GIL while another thread waits for the lock).
pub struct Callback {
    parts: Mutex<Option<Parts>>,
    pub context: Py<PyAny>,
    /// Debug mode only: where the handle was created (asyncio's `_source_traceback`).
    pub source_traceback: Option<Py<PyAny>>,
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
            parts: Mutex::new(Some(Parts { callback, args })),
            context,
            source_traceback: None,
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
    pub fn is_queued(&self) -> bool {
        self.queued.load(Relaxed)
    }

    #[inline]
    pub fn set_queued(&self, queued: bool) {
        self.queued.store(queued, Relaxed);
    }

    /// New references to the callable and its arguments (None once cancelled).
    #[inline]
    pub fn parts(&self, py: Python<'_>) -> Option<Parts> {
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|p| p.clone_ref(py))
    }

    /// Lets the cycle collector see what the handle holds: a handle stored on the object its
    /// callback belongs to (`self._timer = loop.call_later(t, self._on_timeout)`) is a cycle.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(guard) = self.parts.try_lock() {
            if let Some(parts) = guard.as_ref() {
                visit.call(&parts.callback)?;
                visit.call(&parts.args)?;
            }
        }
        visit.call(&self.source_traceback)?;
        visit.call(&self.context)
    }

    fn cancel(&self, counter: impl Fn(&CancelCounts) -> &AtomicUsize) {
        if !self.cancelled.swap(true, Relaxed) && self.queued.load(Relaxed) {
            counter(&self.counts).fetch_add(1, Relaxed);
        }
        let cleared = self.parts.lock().unwrap_or_else(|e| e.into_inner()).take();
        // Released after the lock: dropping the last reference may run Python code.
        drop(cleared);
    }

    fn callback_obj(&self, py: Python<'_>) -> Py<PyAny> {
        self.parts(py)
            .map(|p| p.callback)
            .unwrap_or_else(|| py.None())
    }

    fn args_obj(&self, py: Python<'_>) -> Py<PyAny> {
        self.parts(py)
            .map(|p| p.args.into_any())
            .unwrap_or_else(|| py.None())
    }

    fn describe(&self, py: Python<'_>) -> String {
        let mut described = self
            .parts(py)
            .map(|p| format_callback(py, &p.callback, &p.args))
            .unwrap_or_default();
        if let Some(created) = self.created_at(py) {
            described.push_str(" created at ");
            described.push_str(&created);
        }
        described
    }

    /// `file:line` of the innermost frame of the source traceback (debug mode), as asyncio's
    /// handle reprs show it.
    fn created_at(&self, py: Python<'_>) -> Option<String> {
        let tb = self.source_traceback.as_ref()?.bind(py);
        let last = tb.get_item(-1).ok()?;
        let (file, line): (String, i64) = (
            last.get_item(0).ok()?.extract().ok()?,
            last.get_item(1).ok()?.extract().ok()?,
        );
        Some(format!("{file}:{line}"))
    }

    fn source_traceback_obj(&self, py: Python<'_>) -> Py<PyAny> {
        self.source_traceback
            .as_ref()
            .map_or_else(|| py.None(), |tb| tb.clone_ref(py))
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

impl Handle {
    /// Cancels from Rust (a replaced or removed reader/writer).
    pub fn cancel_now(&self) {
        self.inner.cancel(|c| &c.ready);
    }
}

#[pymethods]
impl Handle {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.inner.traverse(&visit)
    }

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
        self.inner.callback_obj(py)
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.args_obj(py)
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.source_traceback_obj(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.inner.is_cancelled() {
            " cancelled"
        } else {
            ""
        };
        let source = self.inner.describe(py);
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
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.inner.traverse(&visit)
    }

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
        self.inner.callback_obj(py)
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.args_obj(py)
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.source_traceback_obj(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.inner.is_cancelled() {
            " cancelled"
        } else {
            ""
        };
        let source = self.inner.describe(py);
        format!("<TimerHandle{state} when={} {source}>", self.when)
    }
}
