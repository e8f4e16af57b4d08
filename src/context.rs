//! Running a callable inside a `contextvars.Context`, the way asyncio's `Handle._run` does,
//! without building the argument tuple `Context.run` would need.

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{ffi, intern};

/// Calls `callback(*args)` with `context` entered.
#[inline]
pub fn call_in_context(
    py: Python<'_>,
    context: &Py<PyAny>,
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
