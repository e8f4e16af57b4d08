//! The scheduling methods (`call_soon`, `call_soon_threadsafe`, `call_later`, `call_at`) as
//! hand-written METH_FASTCALL | METH_KEYWORDS methods, and the argument-less methods every
//! Future and Task calls (`create_future`, `get_debug`, `time`) as METH_NOARGS ones, put on
//! the class when the module loads. They run for every callback, timer, future and task
//! wake-up (the C Future and Task pass `context=`), and PyO3's generic handling (keyword names
//! decoded and compared as UTF-8, a type-object lookup and a subclass walk to check `self`,
//! which CPython's method descriptor has already checked) cost more than the work itself.
//! Each goes through PyO3's own call trampoline (GIL bookkeeping, panics) and ends in the
//! `Loop` method it stands for; the scheduling arguments are asyncio's:
//! `(leading..., callback, *args, context=None)`, the leading ones and `callback` also by
//! keyword.

use std::ffi::CStr;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::IntoPyObjectExt;

use crate::event_loop::Loop;

static CONTEXT_NAME: GILOnceCell<Py<PyString>> = GILOnceCell::new();
/// Another `"context"` string seen as a keyword name: the C Task's, which Python 3.11 does not
/// intern (it passes `context=` on every step), so that it too is recognised by its address.
static SEEN_CONTEXT_NAME: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

/// A scheduling call's arguments: `names.len()` named ones (the last is the callback), the
/// rest of the positional ones, and `context`.
struct Arguments<'py, const N: usize> {
    named: [Bound<'py, PyAny>; N],
    rest: Bound<'py, PyTuple>,
    context: Option<Bound<'py, PyAny>>,
}

/// Parses `(names..., *args, context=None)` as Python would.
///
/// # Safety
/// As CPython calls a METH_FASTCALL | METH_KEYWORDS method: the GIL held, `args` pointing at
/// `nargsf`'s count of positional arguments followed by one value per name in `kwnames` (a
/// tuple of strings, or NULL), all borrowed for the call.
unsafe fn parse<'py, const N: usize>(
    py: Python<'py>,
    method: &str,
    names: [&str; N],
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Arguments<'py, N>> {
    // SAFETY: PyVectorcall_NARGS only masks the offset flag out of the count.
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) } as usize;
    let arg = |i: usize| {
        // SAFETY: `i` < nargs + len(kwnames), the length of `args` (the function's contract);
        // each item is a live object.
        unsafe { Bound::from_borrowed_ptr(py, *args.add(i)) }
    };
    let mut named: [Option<Bound<'py, PyAny>>; N] =
        std::array::from_fn(|i| (i < nargs).then(|| arg(i)));
    let mut context = None;
    if !kwnames.is_null() {
        // SAFETY: a non-NULL `kwnames` is a live tuple of strings, borrowed for the call.
        let kwnames =
            unsafe { Bound::from_borrowed_ptr(py, kwnames).downcast_into_unchecked::<PyTuple>() };
        let wanted = CONTEXT_NAME.get_or_init(py, || PyString::intern(py, "context").unbind());
        for (i, name) in kwnames.iter().enumerate() {
            let value = arg(nargs + i);
            // Names are interned by the compiler and by the C Future: a pointer compare
            // nearly always decides.
            let is_context = name.is(wanted)
                || SEEN_CONTEXT_NAME.get(py).is_some_and(|seen| name.is(seen))
                || (name.eq(wanted.bind(py))? && {
                    let _ = SEEN_CONTEXT_NAME.set(py, name.clone().unbind());
                    true
                });
            let slot = if is_context {
                &mut context
            } else {
                let position = names.iter().position(|n| name.eq(*n).unwrap_or(false));
                match position {
                    Some(position) => &mut named[position],
                    None => {
                        return Err(PyTypeError::new_err(format!(
                            "{method}() got an unexpected keyword argument '{name}'"
                        )))
                    }
                }
            };
            if slot.replace(value).is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{method}() got multiple values for argument '{name}'"
                )));
            }
        }
    }
    if named.iter().any(Option::is_none) {
        let missing: Vec<&str> = (named.iter().zip(names))
            .filter(|(value, _)| value.is_none())
            .map(|(_, name)| name)
            .collect();
        return Err(PyTypeError::new_err(format!(
            "{method}() missing {} required positional argument{}: '{}'",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            missing.join("' and '"),
        )));
    }
    let rest = PyTuple::new(py, (N.min(nargs)..nargs).map(arg))?;
    Ok(Arguments {
        named: named.map(|value| value.expect("checked just above")),
        rest,
        context,
    })
}

/// `self`, for a method of the descriptor made by `install`.
///
/// # Safety
/// `slf` is the `self` CPython passes to such a method: a live instance of `Loop` (the
/// descriptor checks its type before calling), borrowed for the call.
unsafe fn loop_of<'py>(py: Python<'py>, slf: *mut ffi::PyObject) -> Bound<'py, Loop> {
    // SAFETY: see the function's contract.
    unsafe { Bound::from_borrowed_ptr(py, slf).downcast_into_unchecked::<Loop>() }
}

/// A method's C entry point: CPython calls it as a METH_FASTCALL | METH_KEYWORDS method of
/// `Loop`, its arguments are parsed as `(names..., *args, context=None)` into variables of
/// those names (plus `slf`, `rest` and `context`), and `call` makes the handle it returns.
macro_rules! method {
    ($entry:ident, $name:literal, [$($param:ident),+], |$slf:ident, $rest:ident, $context:ident| $call:expr) => {
        unsafe extern "C" fn $entry(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargsf: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            /// # Safety
            /// As CPython calls the method: see `parse` and `loop_of`.
            unsafe fn body(
                py: Python<'_>,
                slf: *mut ffi::PyObject,
                args: *const *mut ffi::PyObject,
                nargsf: ffi::Py_ssize_t,
                kwnames: *mut ffi::PyObject,
            ) -> PyResult<*mut ffi::PyObject> {
                // SAFETY: the function's contract.
                let (slf, parsed) = unsafe {
                    let names = [$(stringify!($param)),+];
                    let parsed = parse(py, $name, names, args, nargsf, kwnames)?;
                    (loop_of(py, slf), parsed)
                };
                let [$($param),+] = parsed.named;
                let ($slf, $rest, $context) = (&slf, parsed.rest, parsed.context);
                Ok($call?.into_ptr())
            }
            // SAFETY: CPython calls this with the GIL held and the arguments `body` documents;
            // PyO3's trampoline keeps its GIL count, turns an error into a raised exception
            // and a panic into PanicException.
            unsafe {
                pyo3::impl_::trampoline::fastcall_with_keywords(slf, args, nargsf, kwnames, body)
            }
        }
    };
}

method!(
    call_soon_entry,
    "call_soon",
    [callback],
    |slf, rest, context| { Loop::call_soon_impl(slf, callback, rest, context) }
);
method!(
    call_soon_threadsafe_entry,
    "call_soon_threadsafe",
    [callback],
    |slf, rest, context| { Loop::call_soon_threadsafe_impl(slf, callback, rest, context) }
);
method!(
    call_later_entry,
    "call_later",
    [delay, callback],
    |slf, rest, context| { Loop::call_later_impl(slf, &delay, callback, rest, context) }
);
method!(
    call_at_entry,
    "call_at",
    [when, callback],
    |slf, rest, context| { Loop::call_at_impl(slf, &when, callback, rest, context) }
);

/// A METH_NOARGS method's C entry point, `$call` computing its result from `slf`.
macro_rules! noargs {
    ($entry:ident, |$slf:ident| $call:expr) => {
        unsafe extern "C" fn $entry(
            slf: *mut ffi::PyObject,
            args: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            /// # Safety
            /// As CPython calls the method: see `loop_of`.
            unsafe fn body(
                py: Python<'_>,
                slf: *mut ffi::PyObject,
            ) -> PyResult<*mut ffi::PyObject> {
                // SAFETY: the function's contract.
                let $slf = unsafe { loop_of(py, slf) };
                Ok($call.into_bound_py_any(py)?.into_ptr())
            }
            // SAFETY: CPython calls this with the GIL held, `self` and a NULL `args`; PyO3's
            // trampoline keeps its GIL count, turns an error into a raised exception and a
            // panic into PanicException.
            unsafe { pyo3::impl_::trampoline::noargs(slf, args, body) }
        }
    };
}

noargs!(create_future_entry, |slf| Loop::create_future(&slf)?);
noargs!(get_debug_entry, |slf| slf.get().get_debug());
noargs!(time_entry, |slf| slf.get().time());

type Entry = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// How CPython calls a method: with keywords (the scheduling ones) or without arguments.
#[derive(Clone, Copy)]
enum Kind {
    Keywords(Entry),
    NoArgs(ffi::PyCFunction),
}

const METHODS: [(&CStr, Kind, &CStr); 7] = [
    (
        c"call_soon",
        Kind::Keywords(call_soon_entry),
        c"call_soon(callback, *args, context=None)\n--\n\nArranges for callback(*args) to be called soon, in context (default: a copy of the current one); returns its Handle.",
    ),
    (
        c"call_soon_threadsafe",
        Kind::Keywords(call_soon_threadsafe_entry),
        c"call_soon_threadsafe(callback, *args, context=None)\n--\n\nLike call_soon(), from any thread: wakes the loop.",
    ),
    (
        c"call_later",
        Kind::Keywords(call_later_entry),
        c"call_later(delay, callback, *args, context=None)\n--\n\nArranges for callback(*args) to be called in delay seconds; returns its TimerHandle.",
    ),
    (
        c"call_at",
        Kind::Keywords(call_at_entry),
        c"call_at(when, callback, *args, context=None)\n--\n\nArranges for callback(*args) to be called at loop time when; returns its TimerHandle.",
    ),
    (
        c"create_future",
        Kind::NoArgs(create_future_entry),
        c"create_future($self, /)\n--\n\nA new asyncio.Future attached to the loop.",
    ),
    (
        c"get_debug",
        Kind::NoArgs(get_debug_entry),
        c"get_debug($self, /)\n--\n\nWhether the loop is in debug mode.",
    ),
    (
        c"time",
        Kind::NoArgs(time_entry),
        c"time($self, /)\n--\n\nThe loop's clock, in seconds: the monotonic clock, as time.monotonic().",
    ),
];

/// Puts the hand-written methods on the class.
pub fn install(py: Python<'_>, class: &Bound<'_, PyType>) -> PyResult<()> {
    for (name, kind, doc) in METHODS {
        let (ml_meth, ml_flags) = match kind {
            Kind::Keywords(entry) => (
                ffi::PyMethodDefPointer {
                    PyCFunctionFastWithKeywords: entry,
                },
                ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ),
            Kind::NoArgs(entry) => (
                ffi::PyMethodDefPointer { PyCFunction: entry },
                ffi::METH_NOARGS,
            ),
        };
        // Lives as long as the process: the method descriptor points at it.
        let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth,
            ml_flags,
            ml_doc: doc.as_ptr(),
        }));
        // SAFETY: `class` is a live type object and `def` outlives it (leaked above);
        // PyDescr_NewMethod returns a new reference or NULL with an exception set.
        let descriptor = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(class.as_type_ptr(), def))?
        };
        class.setattr(name.to_str().expect("ASCII names"), descriptor)?;
    }
    Ok(())
}
