//! `Loop.call_soon` as a hand-written METH_FASTCALL | METH_KEYWORDS method, put on the class
//! when the module loads. It runs for every callback scheduled and every task wake-up (the C
//! Future and Task pass `context=`), and PyO3's generic argument handling (keyword names
//! decoded and compared as UTF-8, a type-object lookup to check `self`) cost more than the
//! scheduling itself. It goes through PyO3's own call trampoline (GIL bookkeeping, panics)
//! and ends in the same code as the `#[pymethods]` version it replaces, with the same errors.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyString, PyTuple, PyType};

use crate::event_loop::Loop;

static CONTEXT_NAME: GILOnceCell<Py<PyString>> = GILOnceCell::new();

/// The body of `call_soon(callback, *args, context=None)`.
///
/// # Safety
/// Called by CPython through the method descriptor made in `install`: with the GIL held, `slf`
/// an instance of `Loop` (the descriptor checks its type before calling), `args` pointing at
/// `nargs` positional arguments followed by one value per name in `kwnames` (a tuple of
/// strings, or NULL), all borrowed for the call.
unsafe fn call_soon(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: see the function's contract; PyVectorcall_NARGS masks the offset flag.
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) } as usize;
    // SAFETY: `slf` is a live Loop (the descriptor's type check), borrowed for the call.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).downcast_into_unchecked::<Loop>() };
    let kwnames = (!kwnames.is_null())
        // SAFETY: a non-NULL `kwnames` is a live tuple, borrowed for the call.
        .then(|| unsafe {
            Bound::from_borrowed_ptr(py, kwnames).downcast_into_unchecked::<PyTuple>()
        });
    let arg = |i: usize| {
        // SAFETY: `i` < nargs + len(kwnames), the length of `args` (see the contract); each
        // item is live.
        unsafe { Bound::from_borrowed_ptr(py, *args.add(i)) }
    };
    if nargs == 0 {
        return Err(PyTypeError::new_err(
            "Loop.call_soon() missing 1 required positional argument: 'callback'",
        ));
    }
    let callback = arg(0);
    let rest = PyTuple::new(py, (1..nargs).map(arg))?;
    let mut context = None;
    if let Some(names) = &kwnames {
        let wanted = CONTEXT_NAME.get_or_init(py, || PyString::intern(py, "context").unbind());
        for (i, name) in names.iter().enumerate() {
            // Names are interned by the compiler and by the C Future: a pointer compare
            // nearly always decides.
            if !(name.is(wanted) || name.eq(wanted.bind(py))?) {
                return Err(PyTypeError::new_err(format!(
                    "Loop.call_soon() got an unexpected keyword argument '{name}'"
                )));
            }
            if context.replace(arg(nargs + i)).is_some() {
                return Err(PyTypeError::new_err(
                    "Loop.call_soon() got multiple values for argument 'context'",
                ));
            }
        }
    }
    let handle = Loop::call_soon_impl(&slf, callback, rest, context)?;
    Ok(handle.into_ptr())
}

/// The C entry point CPython calls.
unsafe extern "C" fn call_soon_entry(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the GIL held and the arguments `call_soon` documents;
    // PyO3's trampoline keeps its GIL count, turns an error into a raised exception and a
    // panic into PanicException.
    unsafe {
        pyo3::impl_::trampoline::fastcall_with_keywords(slf, args, nargsf, kwnames, call_soon)
    }
}

/// Replaces `call_soon` on the class by the hand-written method.
pub fn install(py: Python<'_>, class: &Bound<'_, PyType>) -> PyResult<()> {
    // Lives as long as the process: the method descriptor points at it.
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"call_soon".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: call_soon_entry,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: c"call_soon(callback, *args, context=None)\n--\n\nArranges for callback(*args) to be called soon, in context (default: a copy of the current one); returns its Handle.".as_ptr(),
    }));
    // SAFETY: `class` is a live type object and `def` outlives it (leaked above);
    // PyDescr_NewMethod returns a new reference or NULL with an exception set.
    let descriptor = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(class.as_type_ptr(), def))?
    };
    class.setattr("call_soon", descriptor)
}
