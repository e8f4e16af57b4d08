//! Running a callable inside a `contextvars.Context`, the way asyncio's `Handle._run` does,
//! without building the argument tuple `Context.run` would need.

use std::cell::Cell;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::{GILOnceCell, GILProtected};
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{ffi, intern};

use crate::handles::Callback;

/// Calls `callback(*args)` with `context` entered.
#[inline(always)]
pub fn call_in_context(
    py: Python<'_>,
    context: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    // SAFETY: `context` is a live object (we hold a reference); PyContext_Enter type-checks it
    // and reports a non-Context or an already entered one as a Python error.
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let result = match crate::transport::try_read_ready(callback, args) {
        Some(read) => read,
        None => match crate::sock_ops::try_ready(callback, args) {
            Some(read) => read,
            None => callback.call1(args).map(drop),
        },
    };
    // SAFETY: the context was entered just above on this thread and the callback, whatever it
    // did, cannot leave another context entered on top of it (Context.run restores on exit).
    let exited = unsafe { ffi::PyContext_Exit(context.as_ptr()) };
    if exited != 0 {
        return Err(PyErr::fetch(py));
    }
    result
}

/// KeyboardInterrupt and SystemExit: the errors asyncio lets out of a callback (and out of
/// the loop) instead of handing them to the exception handler.
pub fn is_fatal(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py)
}

/// A copy of the current context, as `contextvars.copy_context()`.
#[inline]
pub fn copy_current(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: PyContext_CopyCurrent needs only the GIL, which `py` proves; it returns a new
    // reference or NULL with an exception set, which from_owned_ptr_or_err handles.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }.map(Bound::unbind)
}

/// `contextvars.Context` exactly (it cannot be subclassed): the tasks' own `context=` on every
/// step, checked without a lookup.
#[inline]
fn is_context(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is a live object (borrowed for the call); the check compares its type
    // pointer with `PyContext_Type`'s address and reads nothing else.
    unsafe { ffi::PyContext_CheckExact(obj.as_ptr()) != 0 }
}

static CONTEXT_TYPE: GILOnceCell<Py<PyType>> = GILOnceCell::new();

/// A new empty context, as `contextvars.Context()`.
pub fn new_empty(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: PyContext_New needs only the GIL, which `py` proves; it returns a new reference
    // or NULL with an exception set, which from_owned_ptr_or_err handles.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_New()) }.map(Bound::unbind)
}

/// The context a handle runs in: `context` as given, or for None a copy of the current one,
/// except that an empty copy is not kept (None). A handle without a context runs in an empty
/// context its loop reuses (see `EmptyContext`): most callbacks are scheduled from a context
/// with no variables set (plain callbacks, other threads, timers outside tasks), and a copy
/// of it per handle is an allocation (and, past CPython's free list, collector work) for an
/// object that behaves as any other empty context would.
pub fn resolve_for_handle(
    py: Python<'_>,
    context: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Py<PyAny>>> {
    match context {
        Some(ctx) if !ctx.is_none() => resolve(py, Some(ctx)).map(Some),
        _ => {
            let copy = copy_current(py)?.into_bound(py);
            Ok((!is_empty(&copy)).then(|| copy.unbind()))
        }
    }
}

/// Whether a context (exactly `contextvars.Context`) has no variable set.
#[inline]
fn is_empty(context: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `context` is a live Context (made by PyContext_CopyCurrent or PyContext_New),
    // whose mapping length is its variable count and cannot fail.
    unsafe { ffi::PyMapping_Size(context.as_ptr()) == 0 }
}

/// The empty context a loop runs its context-less handles in, reused while it stays as new:
/// after a dispatch that set a variable in it, or kept a reference to it (`get_context`), the
/// handle that ran keeps it as its own and the next dispatch takes a new one. So every handle
/// behaves as if it had been given its own empty context when it was scheduled, as asyncio's
/// do. Out of its cell while a callback runs in it.
pub struct EmptyContext(GILProtected<Cell<Option<Py<PyAny>>>>);

impl Default for EmptyContext {
    fn default() -> Self {
        EmptyContext(GILProtected::new(Cell::new(None)))
    }
}

impl EmptyContext {
    /// Runs a handle's `callback(*args)`: in its own context if it has one, else in this
    /// one, which the handle keeps from then on if it must (a variable set in it, or a
    /// reference kept elsewhere), a new one then being made for the next dispatch.
    #[inline]
    pub fn run_handle(
        &self,
        py: Python<'_>,
        handle: &Callback,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        if let Some(own) = handle.own_context(py) {
            return call_in_context(py, &own, callback, args);
        }
        let ctx = match self.0.get(py).take() {
            Some(ctx) => ctx.into_bound(py),
            None => new_empty(py)?.into_bound(py),
        };
        // The handle's own while it runs (`get_context()` from its callback is the context
        // it runs in), taken back after if nothing else holds it and it is still empty.
        handle.lend_context(py, ctx.clone().unbind());
        let result = call_in_context(py, &ctx, callback, args);
        if ctx.get_refcnt() == 2 && is_empty(&ctx) {
            handle.take_back_context(py);
            self.0.get(py).set(Some(ctx.unbind()));
        }
        result
    }
}

/// `context` as given by the caller, or a copy of the current one for `None`.
pub fn resolve(py: Python<'_>, context: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
    match context {
        None => copy_current(py),
        Some(ctx) if ctx.is_none() => copy_current(py),
        Some(ctx) if is_context(ctx) => Ok(ctx.clone().unbind()),
        Some(ctx) => {
            let ty = CONTEXT_TYPE.get_or_try_init(py, || {
                py.import(intern!(py, "contextvars"))?
                    .getattr(intern!(py, "Context"))?
                    .downcast_into::<PyType>()
                    .map(Bound::unbind)
                    .map_err(PyErr::from)
            })?;
            if ctx.is_instance(ty.bind(py))? {
                Ok(ctx.clone().unbind())
            } else {
                Err(PyTypeError::new_err(format!(
                    "context must be a contextvars.Context, got {}",
                    ctx.get_type().name()?
                )))
            }
        }
    }
}

/// `callable(*args, **dict(zip(kwnames, kwvalues)))` by vectorcall: no keyword dict is built
/// (`create_future`/`create_task` run once per future and per task). `kwnames` is a tuple of
/// interned names, as long as `kwvalues`; at most 4 arguments in all.
pub fn call_with_keywords<'py>(
    callable: &Bound<'py, PyAny>,
    args: &[&Bound<'py, PyAny>],
    kwnames: &Bound<'py, PyTuple>,
    kwvalues: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    assert!(args.len() + kwvalues.len() <= 4 && kwnames.len() == kwvalues.len());
    let mut stack = [std::ptr::null_mut::<ffi::PyObject>(); 4];
    for (slot, arg) in stack.iter_mut().zip(args.iter().chain(kwvalues)) {
        *slot = arg.as_ptr();
    }
    // `stack`: borrowed pointers to objects the slices keep alive for the call, positional
    // ones first, then one per name in `kwnames` (a live tuple of strings).
    // SAFETY: the callee only borrows them; the result is a new reference, or NULL with an
    // exception set, which from_owned_ptr_or_err handles.
    unsafe {
        let result = ffi::PyObject_Vectorcall(
            callable.as_ptr(),
            stack.as_ptr(),
            args.len(),
            kwnames.as_ptr(),
        );
        Bound::from_owned_ptr_or_err(callable.py(), result)
    }
}

/// A tuple of keyword names, for `call_with_keywords`.
pub fn keyword_names<'py>(py: Python<'py>, names: &[&str]) -> Bound<'py, PyTuple> {
    PyTuple::new(py, names.iter().map(|n| PyString::intern(py, n)))
        .expect("a tuple of strings is always built")
}
