//! `IoLoopMonitorState`: what a monitor callback receives after each dispatch. It keeps the
//! original package's four dataclass fields; the callback's pretty name is only computed when
//! someone reads it, so a monitor that ignores names pays nothing for them.

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt, PyTraverseError, PyVisit};

#[pyclass(module = "monitored_ioloop.monitoring", frozen, weakref, freelist = 16)]
pub struct IoLoopMonitorState {
    wall_time: f64,
    handles_count: usize,
    lag: f64,
    /// The callback that ran, until its name has been computed.
    callback: Option<Py<PyAny>>,
    name: GILOnceCell<Py<PyString>>,
}

static PRETTY_NAME: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

impl IoLoopMonitorState {
    pub fn for_dispatch(
        callback: Py<PyAny>,
        wall_time: f64,
        handles_count: usize,
        lag: f64,
    ) -> Self {
        IoLoopMonitorState {
            wall_time,
            handles_count,
            lag,
            callback: Some(callback),
            name: GILOnceCell::new(),
        }
    }

    fn pretty_name(&self, py: Python<'_>) -> PyResult<&Py<PyString>> {
        self.name.get_or_try_init(py, || {
            let Some(callback) = &self.callback else {
                return Ok(PyString::new(py, "").unbind());
            };
            let namer = PRETTY_NAME.get_or_try_init(py, || {
                py.import(intern!(py, "monitored_ioloop._names"))?
                    .getattr(intern!(py, "callback_pretty_name"))
                    .map(Bound::unbind)
            })?;
            Ok(namer
                .bind(py)
                .call1((callback.bind(py),))?
                .downcast_into::<PyString>()?
                .unbind())
        })
    }
}

#[pymethods]
impl IoLoopMonitorState {
    #[new]
    #[pyo3(signature = (callback_wall_time, callback_pretty_name, loop_handles_count, loop_lag))]
    fn new(
        py: Python<'_>,
        callback_wall_time: f64,
        callback_pretty_name: Bound<'_, PyString>,
        loop_handles_count: usize,
        loop_lag: f64,
    ) -> Self {
        let name = GILOnceCell::new();
        let _ = name.set(py, callback_pretty_name.unbind());
        IoLoopMonitorState {
            wall_time: callback_wall_time,
            handles_count: loop_handles_count,
            lag: loop_lag,
            callback: None,
            name,
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.callback)
    }

    /// Wall-clock seconds the callback ran (a whole callback, or one step of a coroutine).
    #[getter]
    fn callback_wall_time(&self) -> f64 {
        self.wall_time
    }

    /// A readable name for the callback: `Class.method`, a function's qualified name, or for a
    /// task step the task's name and its coroutine's qualified name.
    #[getter]
    fn callback_pretty_name(&self, py: Python<'_>) -> PyResult<Py<PyString>> {
        self.pretty_name(py).map(|n| n.clone_ref(py))
    }

    /// Handles still pending in the loop (ready and scheduled, not cancelled, not this one).
    #[getter]
    fn loop_handles_count(&self) -> usize {
        self.handles_count
    }

    /// Seconds between the moment the callback could have run and the moment it started.
    #[getter]
    fn loop_lag(&self) -> f64 {
        self.lag
    }

    #[classattr]
    fn __match_args__(py: Python<'_>) -> PyResult<Py<PyTuple>> {
        Ok(PyTuple::new(
            py,
            [
                "callback_wall_time",
                "callback_pretty_name",
                "loop_handles_count",
                "loop_lag",
            ],
        )?
        .unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let name = self.pretty_name(py)?.bind(py).repr()?;
        Ok(format!(
            "IoLoopMonitorState(callback_wall_time={}, callback_pretty_name={}, loop_handles_count={}, loop_lag={})",
            self.wall_time.into_bound_py_any(py)?.repr()?,
            name,
            self.handles_count,
            self.lag.into_bound_py_any(py)?.repr()?,
        ))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Ok(other) = other.downcast::<IoLoopMonitorState>() else {
            return Ok(py.NotImplemented());
        };
        let other = other.get();
        let same = self.wall_time == other.wall_time
            && self.handles_count == other.handles_count
            && self.lag == other.lag
            && self
                .pretty_name(py)?
                .bind(py)
                .as_any()
                .eq(other.pretty_name(py)?.bind(py))?;
        same.into_py_any(py)
    }
}
