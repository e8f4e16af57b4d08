//! `IoLoopMonitorState`: what a monitor callback receives after each dispatch. The original
//! package's four dataclass fields come first, then `kind`, `task_name` and `started_at`; the
//! callback's pretty name and task name are only computed when someone reads them, so a monitor
//! that ignores names pays nothing for them. The original figures are Python objects made once,
//! read as struct members: a monitor reading two of them costs less than two getter calls.
//! `kind` and `started_at`, which few monitors read, are kept as plain values and made into
//! Python objects only when read, so a monitor that ignores them does not pay for two objects.

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyFloat, PyInt, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt, PyTraverseError, PyVisit};

use super::clock::loop_time_at;
use super::metrics::Kind;

// No `freelist`: PyO3's free list hands out reused objects without tracking them again, and
// a state holds its callback (a cycle if a monitor keeps states).
#[pyclass(module = "monitored_ioloop.monitoring", frozen, weakref)]
pub struct IoLoopMonitorState {
    /// Wall-clock seconds the callback ran (a whole callback, or one step of a coroutine).
    #[pyo3(get)]
    callback_wall_time: Py<PyFloat>,
    /// Handles still pending in the loop (ready and scheduled, not cancelled, not this one).
    #[pyo3(get)]
    loop_handles_count: Py<PyInt>,
    /// Seconds between the moment the callback could have run and the moment it started.
    #[pyo3(get)]
    loop_lag: Py<PyFloat>,
    kind: StateKind,
    started_at: StartedAt,
    /// The callback that ran, until its names have been computed.
    callback: Option<Py<PyAny>>,
    name: GILOnceCell<Py<PyString>>,
    task_name: GILOnceCell<Py<PyAny>>,
}

/// A dispatch's kind, named only when read; or the name a state made in Python was given.
enum StateKind {
    Dispatch(Kind),
    Named(Py<PyString>),
}

/// When the callback started: a dispatch's tick (with the clock reference that turns it into
/// `loop.time()`, converted only when read), or the seconds a state made in Python was given.
pub enum StartedAt {
    Tick(u64, (u64, u64)),
    Seconds(f64),
}

impl StartedAt {
    fn seconds(&self) -> f64 {
        match *self {
            StartedAt::Tick(at, time_ref) => loop_time_at(at, time_ref),
            StartedAt::Seconds(seconds) => seconds,
        }
    }
}

static PRETTY_NAME: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
static TASK_NAME: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

fn names_function(
    py: Python<'_>,
    cell: &'static GILOnceCell<Py<PyAny>>,
    name: &str,
) -> PyResult<Py<PyAny>> {
    cell.get_or_try_init(py, || {
        py.import(intern!(py, "monitored_ioloop._names"))?
            .getattr(name)
            .map(Bound::unbind)
    })
    .map(|f| f.clone_ref(py))
}

/// A count as a Python int (small ones are CPython's cached objects).
fn count(py: Python<'_>, n: usize) -> Py<PyInt> {
    // A usize always converts to a Python int.
    match n.into_pyobject(py) {
        Ok(int) => int.unbind(),
        Err(never) => match never {},
    }
}

fn kind_name(py: Python<'_>, kind: Kind) -> Py<PyString> {
    let name = match kind {
        Kind::Callback => intern!(py, "callback"),
        Kind::Timer => intern!(py, "timer"),
        Kind::Io => intern!(py, "io"),
        Kind::Threadsafe => intern!(py, "threadsafe"),
        Kind::Signal => intern!(py, "signal"),
    };
    name.clone().unbind()
}

impl IoLoopMonitorState {
    pub fn for_dispatch(
        py: Python<'_>,
        callback: Py<PyAny>,
        kind: Kind,
        wall_time: f64,
        handles_count: usize,
        lag: f64,
        started_at: StartedAt,
    ) -> Self {
        IoLoopMonitorState {
            callback_wall_time: PyFloat::new(py, wall_time).unbind(),
            loop_handles_count: count(py, handles_count),
            loop_lag: PyFloat::new(py, lag).unbind(),
            kind: StateKind::Dispatch(kind),
            started_at,
            callback: Some(callback),
            name: GILOnceCell::new(),
            task_name: GILOnceCell::new(),
        }
    }

    fn task_name_of(&self, py: Python<'_>) -> PyResult<&Py<PyAny>> {
        self.task_name.get_or_try_init(py, || match &self.callback {
            None => Ok(py.None()),
            Some(callback) => names_function(py, &TASK_NAME, "task_name")?
                .bind(py)
                .call1((callback.bind(py),))
                .map(Bound::unbind),
        })
    }

    fn pretty_name(&self, py: Python<'_>) -> PyResult<&Py<PyString>> {
        self.name.get_or_try_init(py, || {
            let Some(callback) = &self.callback else {
                return Ok(PyString::new(py, "").unbind());
            };
            let namer = names_function(py, &PRETTY_NAME, "callback_pretty_name")?;
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
    #[pyo3(signature = (
        callback_wall_time,
        callback_pretty_name,
        loop_handles_count,
        loop_lag,
        kind = None,
        task_name = None,
        started_at = 0.0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        callback_wall_time: f64,
        callback_pretty_name: Bound<'_, PyString>,
        loop_handles_count: usize,
        loop_lag: f64,
        kind: Option<Bound<'_, PyString>>,
        task_name: Option<Bound<'_, PyString>>,
        started_at: f64,
    ) -> Self {
        let name = GILOnceCell::new();
        let _ = name.set(py, callback_pretty_name.unbind());
        let task = GILOnceCell::new();
        let _ = task.set(
            py,
            task_name.map_or_else(|| py.None(), |t| t.into_any().unbind()),
        );
        IoLoopMonitorState {
            callback_wall_time: PyFloat::new(py, callback_wall_time).unbind(),
            loop_handles_count: count(py, loop_handles_count),
            loop_lag: PyFloat::new(py, loop_lag).unbind(),
            kind: kind.map_or(StateKind::Dispatch(Kind::Callback), |k| {
                StateKind::Named(k.unbind())
            }),
            started_at: StartedAt::Seconds(started_at),
            callback: None,
            name,
            task_name: task,
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The names are strings (or None): they cannot take part in a cycle.
        visit.call(&self.callback)
    }

    /// A readable name for the callback: `Class.method`, a function's qualified name, or for a
    /// task step the task's name and its coroutine's qualified name.
    #[getter]
    fn callback_pretty_name(&self, py: Python<'_>) -> PyResult<Py<PyString>> {
        self.pretty_name(py).map(|n| n.clone_ref(py))
    }

    /// What made the callback runnable: "callback", "timer", "io", "threadsafe" or "signal".
    #[getter]
    fn kind(&self, py: Python<'_>) -> Py<PyString> {
        match &self.kind {
            StateKind::Dispatch(kind) => kind_name(py, *kind),
            StateKind::Named(name) => name.clone_ref(py),
        }
    }

    /// When the callback started, on the `loop.time()` clock.
    #[getter]
    fn started_at(&self) -> f64 {
        self.started_at.seconds()
    }

    /// The name of the task a task step belongs to, else None.
    #[getter]
    fn task_name(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.task_name_of(py).map(|n| n.clone_ref(py))
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
                "kind",
                "task_name",
                "started_at",
            ],
        )?
        .unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let name = self.pretty_name(py)?.bind(py).repr()?;
        Ok(format!(
            "IoLoopMonitorState(callback_wall_time={}, callback_pretty_name={}, loop_handles_count={}, loop_lag={}, kind={}, task_name={}, started_at={})",
            self.callback_wall_time.bind(py).repr()?,
            name,
            self.loop_handles_count.bind(py).repr()?,
            self.loop_lag.bind(py).repr()?,
            self.kind(py).bind(py).repr()?,
            self.task_name_of(py)?.bind(py).repr()?,
            PyFloat::new(py, self.started_at.seconds()).repr()?,
        ))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Ok(other) = other.downcast::<IoLoopMonitorState>() else {
            return Ok(py.NotImplemented());
        };
        let other = other.get();
        let same = self.callback_wall_time.bind(py).value()
            == other.callback_wall_time.bind(py).value()
            && self
                .loop_handles_count
                .bind(py)
                .as_any()
                .eq(other.loop_handles_count.bind(py))?
            && self.loop_lag.bind(py).value() == other.loop_lag.bind(py).value()
            && self.started_at.seconds() == other.started_at.seconds()
            && self
                .kind(py)
                .bind(py)
                .as_any()
                .eq(other.kind(py).bind(py))?
            && self
                .task_name_of(py)?
                .bind(py)
                .eq(other.task_name_of(py)?.bind(py))?
            && self
                .pretty_name(py)?
                .bind(py)
                .as_any()
                .eq(other.pretty_name(py)?.bind(py))?;
        same.into_py_any(py)
    }
}
