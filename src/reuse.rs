//! Reusing the Python objects the loop makes most often (handles, monitor states) once nothing
//! else can see them: a reference count of one and no weak reference. Such an object can be
//! refilled in place for its next use, which saves an allocation, a deallocation and the
//! collector's bookkeeping, and nobody can tell it from a new one.

use std::cell::Cell;

use pyo3::ffi;
use pyo3::prelude::*;

/// Runs `look` on what `cell` holds without a borrow flag: taken out, looked at, put back.
/// `look` must not run Python code (nothing else may touch the cell meanwhile), so the `None`
/// the take left needs no drop when the value goes back.
#[inline(always)]
pub fn peek<T, R>(cell: &Cell<Option<T>>, look: impl FnOnce(Option<&T>) -> R) -> R {
    let value = cell.take();
    let seen = look(value.as_ref());
    std::mem::forget(cell.replace(value));
    seen
}

/// Whether the caller's reference is the only way to reach `object`: no other reference, no
/// weak one. `object` must be of a class PyO3 made with `weakref`.
#[inline]
pub fn unshared<T>(py: Python<'_>, object: &Py<T>) -> bool {
    object.get_refcnt(py) == 1 && !has_weak_references(object)
}

/// Whether a weak reference to `object` may exist: `object` is a live object (the caller holds
/// a reference) of a type PyO3 made with `weakref`, so its type's tp_weaklistoffset locates its
/// weak-reference list head, NULL while none exists (what CPython's deallocation checks). A
/// type without that offset answers yes: nothing is reused that might be watched.
fn has_weak_references<T>(object: &Py<T>) -> bool {
    // SAFETY: reads only the type's offset and, if it is positive, the list-head pointer it
    // locates inside a live object of that type (see above).
    unsafe {
        let object = object.as_ptr();
        let offset = (*ffi::Py_TYPE(object)).tp_weaklistoffset;
        offset <= 0
            || !(*object
                .cast::<u8>()
                .offset(offset)
                .cast::<*mut ffi::PyObject>())
            .is_null()
    }
}
