//! `GilCell`: state the loop only ever touches with the GIL held, guarded by the GIL itself
//! instead of a mutex, so the dispatch path pays a borrow flag, not a lock (free-threaded
//! CPython is not supported). A borrow must never span Python code: code that could run
//! Python (dropping a last reference, calling back) happens after the borrow ends, and a
//! re-entrant borrow is a bug that panics instead of deadlocking.

use std::cell::{RefCell, RefMut};

use pyo3::sync::GILProtected;
use pyo3::{PyVisit, Python};

pub struct GilCell<T>(GILProtected<RefCell<T>>);

impl<T> GilCell<T> {
    pub fn new(value: T) -> Self {
        GilCell(GILProtected::new(RefCell::new(value)))
    }

    /// The state, borrowed while the GIL (`py`) is held.
    #[inline]
    pub fn lock<'py>(&'py self, py: Python<'py>) -> RefMut<'py, T> {
        self.0.get(py).borrow_mut()
    }

    /// The state during the collector's traversal (which holds the GIL), unless it is borrowed
    /// right now (a collection triggered inside a borrow: then it is skipped, conservatively).
    pub fn for_traverse<'a>(&'a self, visit: &PyVisit<'a>) -> Option<std::cell::Ref<'a, T>> {
        self.0.traverse(visit.clone()).try_borrow().ok()
    }
}
