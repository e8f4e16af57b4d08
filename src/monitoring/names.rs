//! The names a monitor state gives its callback (`callback_pretty_name`, `task_name`), computed
//! natively for what the loop runs most, plain functions, bound methods and task steps, exactly
//! as `monitored_ioloop._names` computes them; everything else (transport reads, partials,
//! objects without a string `__qualname__`) is named by that module. A monitor that reads the
//! name of every dispatch pays, for a function or a method, an attribute read or two instead
//! of a Python call; a task step costs its task's two method calls and the joined string.

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyString, PyType};
use pyo3::{ffi, intern};

use super::callee::is_bound_method;

/// `monitored_ioloop._names.callback_pretty_name`, for what is not named natively.
static PYTHON_NAMER: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
/// The first immutable type found to be a task type (a future with `get_coro`): the C `Task`.
/// Its instances are tasks without the two checks, which would give the same answer.
static TASK_TYPE: GILOnceCell<Py<PyType>> = GILOnceCell::new();
/// `asyncio.Future`, `asyncio.BaseTransport`, `StreamCore`.
static TYPES: GILOnceCell<[Py<PyType>; 3]> = GILOnceCell::new();

fn python_namer(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    PYTHON_NAMER
        .get_or_try_init(py, || {
            py.import(intern!(py, "monitored_ioloop._names"))?
                .getattr(intern!(py, "callback_pretty_name"))
                .map(Bound::unbind)
        })
        .map(|f| f.bind(py))
}

// The optional-attribute lookup of Python 3.7-3.12 (PyObject_GetOptionalAttr from 3.13 on):
// PyO3's `getattr_opt` raises and catches an AttributeError there, which costs more than the
// naming it serves.
#[cfg(not(Py_3_13))]
extern "C" {
    fn _PyObject_LookupAttr(
        obj: *mut ffi::PyObject,
        name: *mut ffi::PyObject,
        result: *mut *mut ffi::PyObject,
    ) -> std::os::raw::c_int;
}

/// `getattr(obj, name, None)`, as an Option, without making an AttributeError when the
/// attribute is missing.
fn lookup_attr<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = obj.py();
    let mut found: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: `obj` and `name` are live objects borrowed for the call and `found` a valid
    // out-pointer; the call sets it to a new reference (1), leaves it NULL with nothing raised
    // (0), or raises (-1).
    let outcome = unsafe {
        #[cfg(Py_3_13)]
        let outcome = ffi::PyObject_GetOptionalAttr(obj.as_ptr(), name.as_ptr(), &mut found);
        #[cfg(not(Py_3_13))]
        let outcome = _PyObject_LookupAttr(obj.as_ptr(), name.as_ptr(), &mut found);
        outcome
    };
    match outcome {
        // SAFETY: a new reference, as said above.
        1 => Ok(Some(unsafe { Bound::from_owned_ptr(py, found) })),
        0 => Ok(None),
        _ => Err(PyErr::fetch(py)),
    }
}

fn types(py: Python<'_>) -> PyResult<&[Py<PyType>; 3]> {
    TYPES.get_or_try_init(py, || {
        let attr = |module: &str, name: &str| -> PyResult<Py<PyType>> {
            Ok(py
                .import(module)?
                .getattr(name)?
                .downcast_into::<PyType>()?
                .unbind())
        };
        Ok([
            attr("asyncio", "Future")?,
            attr("asyncio", "BaseTransport")?,
            attr("monitored_ioloop._native", "StreamCore")?,
        ])
    })
}

/// The task whose step a callback is (`_names.task_of`), given the callback's `__self__`:
/// that owner, if it is a future with `get_coro`.
fn task_of<'py>(owner: Option<&Bound<'py, PyAny>>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(owner) = owner else {
        return Ok(None);
    };
    let py = owner.py();
    if TASK_TYPE
        .get(py)
        .is_some_and(|ty| owner.get_type_ptr().cast() == ty.as_ptr())
    {
        return Ok(Some(owner.clone()));
    }
    let future = &types(py)?[0];
    if owner.is_instance(future.bind(py))? && owner.hasattr(intern!(py, "get_coro"))? {
        let ty = owner.get_type();
        if is_immutable(&ty) {
            let _ = TASK_TYPE.set(py, ty.unbind());
        }
        return Ok(Some(owner.clone()));
    }
    Ok(None)
}

/// Whether a type's bases and attributes can never change: a static type, or one made with
/// `Py_TPFLAGS_IMMUTABLETYPE` (the C `Task` is one or the other on every supported Python).
fn is_immutable(ty: &Bound<'_, PyType>) -> bool {
    // SAFETY: reads the flags of a live type object (borrowed for the call).
    let flags = unsafe { ffi::PyType_GetFlags(ty.as_type_ptr()) };
    #[cfg(Py_3_10)]
    let immutable_heap_type = flags & ffi::Py_TPFLAGS_IMMUTABLETYPE != 0;
    // The flag came with 3.10; before, every immutable type is a static one.
    #[cfg(not(Py_3_10))]
    let immutable_heap_type = false;
    flags & ffi::Py_TPFLAGS_HEAPTYPE == 0 || immutable_heap_type
}

/// `_names.callback_pretty_name(callback)`.
pub fn pretty_name<'py>(callback: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    let py = callback.py();
    let owner = lookup_attr(callback, intern!(py, "__self__"))?;
    if let Some(task) = task_of(owner.as_ref())? {
        if let Some(name) = task_step_name(&task)? {
            return Ok(name);
        }
    } else if is_plain(callback, owner.as_ref())? {
        let qualname = lookup_attr(callback, intern!(py, "__qualname__"))?;
        if let Some(Ok(qualname)) = qualname.map(|q| q.downcast_into::<PyString>()) {
            return Ok(qualname);
        }
    }
    Ok(python_namer(py)?
        .call1((callback,))?
        .downcast_into::<PyString>()?)
}

/// `"<task name> (<coroutine qualname>)"`, or the task's name when it has no coroutine; None
/// when a part is not a string (then the f-string's formatting of it decides, in Python).
fn task_step_name<'py>(task: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyString>>> {
    let py = task.py();
    let coro = task.call_method0(intern!(py, "get_coro"))?;
    let name = task.call_method0(intern!(py, "get_name"))?;
    if coro.is_none() {
        return name.str().map(Some);
    }
    let qualname = match lookup_attr(&coro, intern!(py, "__qualname__"))? {
        Some(q) if q.is_truthy()? => q,
        _ => coro.get_type().getattr(intern!(py, "__qualname__"))?,
    };
    let (Ok(name), Ok(qualname)) = (name.downcast::<PyString>(), qualname.downcast::<PyString>())
    else {
        return Ok(None);
    };
    // SAFETY: the format's two `%U` take the two strings (live objects, checked to be `str`
    // just above); the result is a new reference, or NULL with an exception set.
    let joined = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_FromFormat(c"%U (%U)".as_ptr(), name.as_ptr(), qualname.as_ptr()),
        )?
    };
    Ok(Some(joined.downcast_into::<PyString>()?))
}

/// A function, bound method or built-in function (their `__name__` and `__qualname__` are
/// strings, and none is a partial or a transport's reader) not bound to a transport: named by
/// its `__qualname__`, which is all `_names` does for it.
fn is_plain(callback: &Bound<'_, PyAny>, owner: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
    let py = callback.py();
    let ptr = callback.as_ptr();
    // SAFETY: the checks read only the type of a live object (borrowed for the call).
    let plain_type = unsafe { ffi::PyFunction_Check(ptr) != 0 || ffi::PyCFunction_Check(ptr) != 0 }
        || is_bound_method(callback);
    if !plain_type {
        return Ok(false);
    }
    let Some(owner) = owner else {
        return Ok(true);
    };
    let [_, transport, core] = types(py)?;
    Ok(!owner.is_instance(core.bind(py))? && !owner.is_instance(transport.bind(py))?)
}

/// `_names.task_name(callback)`: the name of the task whose step `callback` is, else None.
pub fn task_name<'py>(callback: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = callback.py();
    let owner = lookup_attr(callback, intern!(py, "__self__"))?;
    match task_of(owner.as_ref())? {
        Some(task) => Ok(task
            .call_method0(intern!(py, "get_name"))?
            .str()?
            .into_any()),
        None => Ok(py.None().into_bound(py)),
    }
}

/// `_callback_pretty_name(callback)`: the native naming, for tests that compare it with
/// `monitored_ioloop._names`.
#[pyfunction]
pub fn _callback_pretty_name<'py>(callback: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    pretty_name(callback)
}
