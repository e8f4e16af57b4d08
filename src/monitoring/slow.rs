//! Slow callbacks, the rare path: describing a dispatch that took at least the threshold (its
//! name, task, coroutine and `file:line` span) is done by Python code in
//! `monitored_ioloop._slow`, called only for those dispatches, and for the steps of coroutines
//! already seen to be slow, which note the line they resume from before they run.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;

static SLOW_MODULE: GILOnceCell<Py<PyModule>> = GILOnceCell::new();

fn module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    SLOW_MODULE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import(intern!(py, "monitored_ioloop._slow"))?.unbind())
        })
        .map(|m| m.bind(py))
}

/// Where a task's coroutine stands before a step: an opaque value handed back to `describe`
/// (None if it cannot be told).
pub fn resume_point(task: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
    let py = task.py();
    module(py)
        .and_then(|m| m.call_method1(intern!(py, "resume_point"), (task,)))
        .ok()
        .filter(|p| !p.is_none())
        .map(Bound::unbind)
}

/// What a slow dispatch is recorded as: a `SlowCallback`, and the name it is counted under.
pub struct Described {
    pub record: Py<PyAny>,
    pub count_name: String,
}

#[allow(clippy::too_many_arguments)]
pub fn describe(
    py: Python<'_>,
    callback: &Bound<'_, PyAny>,
    kind: &str,
    wall_ns: u64,
    lag_ns: u64,
    started_at: f64,
    resume: Option<Py<PyAny>>,
) -> PyResult<Described> {
    let described = module(py)?.call_method1(
        intern!(py, "describe"),
        (
            callback,
            kind,
            wall_ns as f64 * 1e-9,
            lag_ns as f64 * 1e-9,
            started_at,
            resume,
        ),
    )?;
    let (record, count_name): (Py<PyAny>, String) = described.extract()?;
    Ok(Described { record, count_name })
}

/// A readable name for a callable that has no code object of its own (`Class.method` of a
/// builtin, a callable instance's type).
pub fn pretty_name(callback: &Bound<'_, PyAny>) -> Py<PyAny> {
    let py = callback.py();
    module(py)
        .and_then(|m| m.call_method1(intern!(py, "callable_name"), (callback,)))
        .map(Bound::unbind)
        .unwrap_or_else(|_| {
            callback
                .get_type()
                .name()
                .map_or_else(|_| py.None(), |n| n.into_any().unbind())
        })
}

/// What names busy time counted under a code object (`_slow.code_namer`): the code object on
/// 3.11+, which knows its qualified name; before, the qualified name taken now, with the code.
pub fn code_namer(
    callback: &Bound<'_, PyAny>,
    task: Option<&Bound<'_, PyAny>>,
    code: &Bound<'_, PyAny>,
) -> Py<PyAny> {
    let py = callback.py();
    module(py)
        .and_then(|m| m.call_method1(intern!(py, "code_namer"), (callback, task, code)))
        .map(Bound::unbind)
        .unwrap_or_else(|_| code.clone().unbind())
}
