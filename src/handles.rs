//! `Handle` and `TimerHandle`: the objects `call_soon`/`call_later` return, with asyncio's API
//! (`cancel`, `cancelled`, `when`, `get_context`, an asyncio-like `repr`), weakref-able.
//!
//! Both are frozen: the callable and its arguments sit in a cell only touched with the GIL
//! held, and the two flags are atomics. `queued` says the handle still sits in the loop's ready
//! queue or timer heap, so a cancel can be counted there and the pending count stays exact.
//! A loop reuses its spent `Handle`s that nothing else holds (`HandlePool`).
//!
//! `Handle` (what `call_soon` returns, the hottest allocation of an asyncio program, nearly
//! always dropped at once by its caller) is not tracked by the cycle collector: allocating one
//! costs no collector work, and a batch of a million pending callbacks is not rescanned at every
//! collection. It holds its callable only while it can still run: a one-shot handle gives it up
//! when it runs (or is cancelled, or its loop closes), so no cycle through it outlives its run;
//! while it is pending and only its loop holds it, the loop's traversal shows the collector what
//! it holds (`Callback::visit_if_owned`). `TimerHandle`s, which code does keep (`asyncio.sleep`,
//! timeouts, keep-alive timers), are tracked, except while they sit in the queues of a running
//! loop: a running loop is alive, and so is everything it will run, so the collector loses
//! nothing by not seeing them there, and a program with many pending timers does not rescan
//! them at every collection. A timer handle is tracked again as it leaves a running loop's
//! queues (fired, or a cancelled one dropped) while anything else still holds it, and all of
//! them are when the loop stops, so an unclosed loop whose tasks sleep is still collected.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::{GILOnceCell, GILProtected};
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::gil_cell::GilCell;
use crate::loop_slots::LoopSlot;
use crate::monitoring::ticks_to_ns;
use crate::reuse::{peek, unshared};

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

/// A handle's reference count, read in the collector's traversal (which runs with the GIL
/// held but hands out no `Python` token).
pub fn refs_in_traverse<T>(handle: &Py<T>) -> isize {
    // SAFETY: `handle` is a live object (the caller holds a reference), and Py_REFCNT only
    // reads its count; the collector runs with the GIL held, so nothing changes it meanwhile.
    unsafe { pyo3::ffi::Py_REFCNT(handle.as_ptr()) }
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
/// Laid out small: the `Cell`s (not `RefCell`s) are only ever taken out, copied or put back,
/// with no Python code in between, so they need no borrow flag, and the loop's slot
/// (`LoopSlot`, 6 bytes) shares a word with the two flags. A `Handle` is then 64 bytes and a
/// `TimerHandle` 88, CPython's 64- and 96-byte allocation classes (they were 88 and 104, in
/// the 96- and 112-byte ones): a batch of callbacks touches less memory.
pub struct Callback {
    parts: GILProtected<Cell<Option<Parts>>>,
    /// Unset: the handle runs in its loop's reusable empty context (`context::EmptyContext`),
    /// until it needs one of its own (`get_context`, or a variable its callback set).
    context: GILProtected<Cell<Option<Py<PyAny>>>>,
    /// Debug mode only: where the handle was created (asyncio's `_source_traceback`).
    pub source_traceback: Option<Py<PyAny>>,
    cancelled: AtomicBool,
    queued: AtomicBool,
    /// Where a cancellation while queued is counted (its loop's `CancelCounts`).
    slot: LoopSlot,
}

impl Callback {
    pub fn new(
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
        slot: LoopSlot,
    ) -> Self {
        Callback {
            parts: GILProtected::new(Cell::new(Some(Parts { callback, args }))),
            context: GILProtected::new(Cell::new(context)),
            source_traceback: None,
            cancelled: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            slot,
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

    /// A new reference to the handle's own context (see `context`), if it has one.
    #[inline]
    pub fn own_context<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        peek(self.context.get(py), |own| own.map(|c| c.bind(py).clone()))
    }

    /// Gives a handle without a context of its own the loop's empty one it is about to run
    /// in: it keeps it unless `take_back_context` follows.
    #[inline]
    pub fn lend_context(&self, py: Python<'_>, context: Py<PyAny>) {
        let had = self.context.get(py).replace(Some(context));
        debug_assert!(had.is_none(), "lending a context to a handle that has one");
        drop(had);
    }

    /// Drops the handle's context: the one `lend_context` gave back to the loop (which still
    /// holds it), or a spent handle's before it is pooled. Released once out of the cell: the
    /// last reference to a context may run Python code.
    #[inline]
    pub fn take_back_context(&self, py: Python<'_>) {
        if let Some(context) = self.context.get(py).take() {
            context.drop_ref(py);
        }
    }

    /// The context the handle runs in (`get_context()`): its own, made now (empty) if it
    /// had none.
    pub fn context(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(own) = self.own_context(py) {
            return Ok(own.unbind());
        }
        let made = crate::context::new_empty(py)?;
        // Had none (just checked, and making one runs no code of the handle's).
        drop(self.context.get(py).replace(Some(made.clone_ref(py))));
        Ok(made)
    }

    /// New references to the callable and its arguments (None once run, cancelled or closed).
    #[inline]
    pub fn parts(&self, py: Python<'_>) -> Option<Parts> {
        peek(self.parts.get(py), |parts| parts.map(|p| p.clone_ref(py)))
    }

    /// Makes a spent handle's callback a new one (`HandlePool`): as `new`, on an object
    /// nothing else holds.
    fn renew(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) {
        // A spent handle's parts are already gone: nothing to release.
        let stale = self.parts.get(py).replace(Some(Parts { callback, args }));
        debug_assert!(
            stale.is_none(),
            "renewing a handle that still has its callback"
        );
        drop(stale);
        // A pooled handle's context was taken back before it was pooled.
        let stale = self.context.get(py).replace(context);
        debug_assert!(
            stale.is_none(),
            "renewing a handle that still has a context"
        );
        drop(stale);
        self.cancelled.store(false, Relaxed);
    }

    /// Drops the callable and its arguments (cancelled, run once, or its loop closed).
    pub fn clear(&self, py: Python<'_>) {
        let cleared = self.parts.get(py).take();
        // Released after the borrow (dropping the last reference may run Python code), with a
        // plain decref.
        if let Some(Parts { callback, args }) = cleared {
            crate::sock_ops::release_if_op(py, &callback);
            callback.drop_ref(py);
            args.drop_ref(py);
        }
    }

    /// For the owning loop's traversal: shows the collector what the handle holds, as if the
    /// loop held it itself, but only while nothing but the loop holds the handle (`refs`, the
    /// handle's reference count, is 1). A handle someone else also holds is not looked into:
    /// its references then count as external, which keeps what it holds alive rather than
    /// letting the collector clear objects that are still reachable.
    #[inline]
    pub fn visit_if_owned(&self, refs: isize, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if refs != 1 {
            return Ok(());
        }
        // Visiting runs no Python code.
        peek(self.parts.traverse(visit.clone()), |parts| {
            peek(self.context.traverse(visit.clone()), |context| {
                Self::visit_parts(visit, parts, &self.source_traceback, context)
            })
        })
    }

    #[inline]
    fn visit_parts(
        visit: &PyVisit<'_>,
        parts: Option<&Parts>,
        source_traceback: &Option<Py<PyAny>>,
        context: Option<&Py<PyAny>>,
    ) -> Result<(), PyTraverseError> {
        if let Some(parts) = parts {
            visit.call(&parts.callback)?;
            visit.call(&parts.args)?;
        }
        visit.call(source_traceback)?;
        visit.call(context)
    }

    /// Everything the callback holds, for a tracked handle's own traversal.
    #[inline]
    pub fn visit_all(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.visit_if_owned(1, visit)
    }

    fn cancel(&self, py: Python<'_>, counter: impl Fn(&CancelCounts) -> &AtomicUsize) {
        if !self.cancelled.swap(true, Relaxed) && self.queued.load(Relaxed) {
            self.slot.with_counts(py, |counts| {
                counter(counts).fetch_add(1, Relaxed);
            });
        }
        self.clear(py);
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

// No `freelist`: PyO3's takes a mutex per allocation and per release; `HandlePool` keeps
// spent handles of a loop instead.
#[pyclass(module = "monitored_ioloop._native", frozen, weakref)]
pub struct Handle {
    pub inner: Callback,
}

/// How many spent handles a loop keeps at most: enough for a burst queued at once (a gather
/// of many tasks, a stream of `call_soon_threadsafe` from another thread), about 4 MiB of
/// 64-byte handles at its fullest.
const POOLED_MAX: usize = 1 << 16;
/// How many it keeps however long they stay unused.
const POOLED_KEPT: usize = 256;
/// How often it frees half of those it did not use since the last time.
const TRIM_INTERVAL_NS: u64 = 1_000_000_000;

/// A loop's spent `call_soon` handles, reused for the next ones: a handle is created for every
/// callback and task step, and nearly always dropped by its caller at once, so that its
/// dispatch ends holding the only reference. Such a handle is indistinguishable from a new one
/// once renewed (nothing else holds it, no weak reference to it exists, it has no creation
/// traceback), and reusing it saves an allocation, a deallocation and their bookkeeping.
///
/// After a burst the pool holds as many handles as the burst had, up to `POOLED_MAX`; while it
/// meets every demand, it frees half of what it holds, once a second (`trim`), down to
/// `POOLED_KEPT`. (Nothing is counted per handle taken: the mark is set when the pool runs
/// dry, on the path that allocates anyway.)
pub struct HandlePool(GilCell<Spares>);

#[derive(Default)]
struct Spares {
    handles: Vec<Py<Handle>>,
    /// A handle was asked for while none was spare, since the last trim.
    ran_dry: bool,
    /// The tick of the last trim.
    trimmed_at: u64,
}

impl Default for HandlePool {
    fn default() -> Self {
        HandlePool(GilCell::new(Spares::default()))
    }
}

/// How many of `held` spare handles a trim frees: none if the pool ran dry since the last one,
/// else half of them, never going below `POOLED_KEPT`.
fn to_free(held: usize, ran_dry: bool) -> usize {
    if ran_dry {
        0
    } else {
        held.saturating_sub(POOLED_KEPT).div_ceil(2)
    }
}

impl HandlePool {
    /// A queued handle for `callback(*args)` in `context` (None: the loop's empty one).
    pub fn take(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
        slot: LoopSlot,
    ) -> PyResult<Py<Handle>> {
        let spare = {
            let mut spares = self.0.lock(py);
            let spare = spares.handles.pop();
            if spare.is_none() {
                spares.ran_dry = true;
            }
            spare
        };
        let handle = match spare {
            Some(handle) => {
                handle.get().inner.renew(py, callback, args, context);
                handle
            }
            None => {
                let inner = Callback::new(callback, args, context, slot);
                Py::new(py, Handle { inner })?
            }
        };
        handle.get().inner.set_queued(true);
        Ok(handle)
    }

    /// Takes back a handle whose dispatch is over (or that was dropped cancelled), if it can
    /// be reused; releases it otherwise.
    pub fn give_back(&self, py: Python<'_>, handle: Py<Handle>) {
        let inner = &handle.get().inner;
        let reusable = inner.source_traceback.is_none()
            && unshared(py, &handle)
            && self.0.lock(py).handles.len() < POOLED_MAX;
        if !reusable {
            handle.drop_ref(py);
            return;
        }
        // Released before the handle is pooled: dropping them may run Python code.
        inner.clear(py);
        inner.take_back_context(py);
        // Checked again: that code may have taken a reference to it, or filled the pool.
        let rejected = {
            let mut spares = self.0.lock(py);
            if handle.get_refcnt(py) == 1 && spares.handles.len() < POOLED_MAX {
                spares.handles.push(handle);
                None
            } else {
                Some(handle)
            }
        };
        if let Some(handle) = rejected {
            handle.drop_ref(py);
        }
    }

    /// Frees half of the spare handles if the pool never ran dry since the last trim, and that
    /// was a second ago or more (`now` is a tick; the loop calls this after each poll).
    pub fn trim(&self, py: Python<'_>, now: u64) {
        let freed = {
            let mut spares = self.0.lock(py);
            if ticks_to_ns(spares.trimmed_at, now) < TRIM_INTERVAL_NS {
                return;
            }
            spares.trimmed_at = now;
            let held = spares.handles.len();
            let kept = held - to_free(held, spares.ran_dry);
            let freed = spares.handles.split_off(kept);
            let held = spares.handles.len();
            if spares.handles.capacity() > 4 * held.max(POOLED_KEPT) {
                spares.handles.shrink_to(2 * held.max(POOLED_KEPT));
            }
            spares.ran_dry = false;
            freed
        };
        // Outside the borrow. A spare handle holds nothing, so freeing it runs no Python code.
        for handle in freed {
            handle.drop_ref(py);
        }
    }

    /// Frees every spare handle (the loop is closing: none will be asked for again).
    pub fn clear(&self, py: Python<'_>) {
        let freed = std::mem::take(&mut self.0.lock(py).handles);
        for handle in freed {
            handle.drop_ref(py);
        }
    }

    /// How many spare handles the pool holds (`Loop._spare_handles`, for tests).
    pub fn len(&self, py: Python<'_>) -> usize {
        self.0.lock(py).handles.len()
    }
}

impl Handle {
    /// Cancels from Rust (a replaced or removed reader/writer).
    pub fn cancel_now(&self, py: Python<'_>) {
        self.inner.cancel(py, |c| &c.ready);
    }
}

#[pymethods]
impl Handle {
    fn cancel(&self, py: Python<'_>) {
        self.inner.cancel(py, |c| &c.ready);
    }

    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.inner.context(py)
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

// No `freelist`: PyO3's free list hands out reused objects without tracking them again, and a
// timer handle must stay tracked by the collector (see the module comment).
#[pyclass(module = "monitored_ioloop._native", frozen, weakref)]
pub struct TimerHandle {
    pub inner: Callback,
    pub when: f64,
}

impl TimerHandle {
    /// Out of the collector's view while a running loop's queues hold it (see the module
    /// comment): called as a running loop schedules it.
    pub fn untrack(handle: &Py<TimerHandle>) {
        // SAFETY: `handle` is a live object of a GC type (TimerHandle has `__traverse__`), which
        // PyObject_GC_UnTrack accepts tracked or not; callers hold the GIL (they are loop
        // methods called from Python).
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(handle.as_ptr().cast()) }
    }

    /// Back in the collector's view, if it is not: as it leaves a running loop's queues, or
    /// when its loop stops.
    pub fn track(handle: &Py<TimerHandle>) {
        // SAFETY: as in `untrack`; PyObject_GC_Track must not be given a tracked object, which
        // the PyObject_GC_IsTracked check just before rules out.
        unsafe {
            let ptr = handle.as_ptr();
            if pyo3::ffi::PyObject_GC_IsTracked(ptr) == 0 {
                pyo3::ffi::PyObject_GC_Track(ptr.cast());
            }
        }
    }

    /// `track`, when something besides the caller's reference holds it (a handle only the
    /// caller holds is about to be freed).
    pub fn track_if_held(handle: &Py<TimerHandle>) {
        if refs_in_traverse(handle) > 1 {
            Self::track(handle);
        }
    }
}

#[pymethods]
impl TimerHandle {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.inner.visit_all(&visit)
    }

    fn cancel(&self, py: Python<'_>) {
        self.inner.cancel(py, |c| &c.timers);
    }

    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// The absolute time, in the loop's `time()` clock, the callback is scheduled for.
    fn when(&self) -> f64 {
        self.when
    }

    fn get_context(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.inner.context(py)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_frees_half_of_the_spare_handles_above_those_always_kept() {
        assert_eq!(to_free(0, false), 0);
        assert_eq!(to_free(POOLED_KEPT, false), 0);
        assert_eq!(to_free(10_000, false), (10_000 - POOLED_KEPT) / 2);
        // More were asked for than it had since the last trim: none is freed.
        assert_eq!(to_free(10_000, true), 0);
        // A pool left unused ends at what it always keeps, in about 17 trims from full.
        let (mut held, mut trims) = (POOLED_MAX, 0);
        while to_free(held, false) > 0 {
            held -= to_free(held, false);
            trims += 1;
        }
        assert_eq!(held, POOLED_KEPT);
        assert!(trims < 20);
    }
}
