//! `IoLoopMonitorState`: what a monitor callback receives after each dispatch. The original
//! package's four dataclass fields come first, then `kind`, `task_name` and `started_at`; the
//! callback's pretty name and task name are only computed when someone reads them, so a monitor
//! that ignores names pays nothing for them. The original figures are Python objects made once,
//! read as struct members: a monitor reading two of them costs less than two getter calls.
//! `kind` and `started_at`, which few monitors read, are kept as plain values and made into
//! Python objects only when read, so a monitor that ignores them does not pay for two objects.
//!
//! A state is refilled for the next dispatch when the monitor kept no reference to it (nor a
//! weak one), as `HandlePool` does for handles: most monitors read a state and let it go, and
//! reuse spares an allocation, its collector bookkeeping and a deallocation per report. So the
//! figures sit in cells, which Python reads through struct members this module puts on the
//! class (PyO3 makes members only of plain `Py` fields); a state someone holds never changes.

use std::cell::Cell;
use std::ffi::CStr;

use pyo3::prelude::*;
use pyo3::sync::GILProtected;
use pyo3::types::{PyFloat, PyInt, PyString, PyTuple, PyType};
use pyo3::{ffi, intern, IntoPyObjectExt, PyTraverseError, PyVisit};

use super::clock::loop_time_at;
use super::metrics::Kind;
use super::names;
use crate::reuse::peek;

/// A Python object the loop may replace while it alone holds the state; never empty once the
/// state is made (an empty one reads as a missing attribute).
type Member<T> = GILProtected<Cell<Option<Py<T>>>>;

// No `freelist`: PyO3's free list hands out reused objects without tracking them again, and
// a state holds its callback (a cycle if a monitor keeps states).
#[pyclass(module = "monitored_ioloop.monitoring", frozen, weakref)]
pub struct IoLoopMonitorState {
    /// Wall-clock seconds the callback ran (a whole callback, or one step of a coroutine).
    callback_wall_time: Member<PyFloat>,
    /// Handles still pending in the loop (ready and scheduled, not cancelled, not this one).
    loop_handles_count: Member<PyInt>,
    /// Seconds between the moment the callback could have run and the moment it started.
    loop_lag: Member<PyFloat>,
    kind: GILProtected<Cell<Kind>>,
    /// The kind a state made in Python was given (then `kind` is unused).
    named_kind: Option<Py<PyString>>,
    started_at: GILProtected<Cell<StartedAt>>,
    /// The callback that ran, while its names may still be asked for.
    callback: GILProtected<Cell<Option<Py<PyAny>>>>,
    name: GILProtected<Cell<Option<Py<PyString>>>>,
    task_name: GILProtected<Cell<Option<Py<PyAny>>>>,
}

/// The members `install_members` puts on the class, with their docs.
const MEMBERS: [(&CStr, &CStr); 3] = [
    (
        c"callback_wall_time",
        c"Wall-clock seconds the callback ran (a whole callback, or one step of a coroutine).",
    ),
    (
        c"loop_handles_count",
        c"Handles still pending in the loop (ready and scheduled, not cancelled, not this one).",
    ),
    (
        c"loop_lag",
        c"Seconds between the moment the callback could have run and the moment it started.",
    ),
];

/// When the callback started: a dispatch's tick (with the clock reference that turns it into
/// `loop.time()`, converted only when read), or the seconds a state made in Python was given.
#[derive(Clone, Copy)]
pub enum StartedAt {
    Tick(u64, (u64, u64)),
    Seconds(f64),
}

impl StartedAt {
    fn seconds(self) -> f64 {
        match self {
            StartedAt::Tick(at, time_ref) => loop_time_at(at, time_ref),
            StartedAt::Seconds(seconds) => seconds,
        }
    }
}

/// Puts the figures on the class as read-only struct members, at the offsets their cells have
/// inside an instance (measured on one: the layout is PyO3's). A member reads the object
/// pointer a cell holds, which is all an `Option<Py<T>>` is.
pub fn install_members(py: Python<'_>, class: &Bound<'_, PyType>) -> PyResult<()> {
    let dispatch = Dispatch {
        callback: py.None(),
        kind: Kind::Callback,
        wall_time: 0.0,
        handles_count: 0,
        lag: 0.0,
        started_at: StartedAt::Seconds(0.0),
    };
    let sample = Py::new(py, IoLoopMonitorState::for_dispatch(py, dispatch))?;
    let state = sample.get();
    let base = sample.as_ptr() as usize;
    let cells = [
        state.callback_wall_time.get(py).as_ptr() as usize,
        state.loop_handles_count.get(py).as_ptr() as usize,
        state.loop_lag.get(py).as_ptr() as usize,
    ];
    for ((name, doc), cell) in MEMBERS.into_iter().zip(cells) {
        // Lives as long as the process: the member descriptor points at it.
        let def: &'static mut ffi::PyMemberDef = Box::leak(Box::new(ffi::PyMemberDef {
            name: name.as_ptr(),
            type_code: ffi::Py_T_OBJECT_EX,
            offset: (cell - base) as ffi::Py_ssize_t,
            flags: ffi::Py_READONLY,
            doc: doc.as_ptr(),
        }));
        // SAFETY: `class` is a live type object, `def` outlives it (leaked above) and names a
        // pointer-sized object field inside every instance; PyDescr_NewMember returns a new
        // reference or NULL with an exception set.
        let descriptor = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMember(class.as_type_ptr(), def))?
        };
        class.setattr(name.to_str().expect("ASCII names"), descriptor)?;
    }
    Ok(())
}

/// Replaces what `cell` holds, releasing the old object with the GIL held (`py`).
fn put<T>(py: Python<'_>, cell: &Member<T>, value: Bound<'_, T>) {
    if let Some(old) = cell.get(py).replace(Some(value.unbind())) {
        old.drop_ref(py);
    }
}

/// What `cell` holds (a figure: never empty once the state is made).
fn figure<'py, T>(py: Python<'py>, cell: &Member<T>) -> Bound<'py, T> {
    peek(cell.get(py), |value| {
        value
            .expect("a state's figures are set when it is made")
            .bind(py)
            .clone()
    })
}

/// A count as a Python int (small ones are CPython's cached objects).
fn count(py: Python<'_>, n: usize) -> Bound<'_, PyInt> {
    // A usize always converts to a Python int.
    match n.into_pyobject(py) {
        Ok(int) => int,
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

/// What one dispatch reports.
pub struct Dispatch {
    pub callback: Py<PyAny>,
    pub kind: Kind,
    pub wall_time: f64,
    pub handles_count: usize,
    pub lag: f64,
    pub started_at: StartedAt,
}

impl IoLoopMonitorState {
    pub fn for_dispatch(py: Python<'_>, dispatch: Dispatch) -> Self {
        IoLoopMonitorState {
            callback_wall_time: member(PyFloat::new(py, dispatch.wall_time)),
            loop_handles_count: member(count(py, dispatch.handles_count)),
            loop_lag: member(PyFloat::new(py, dispatch.lag)),
            kind: GILProtected::new(Cell::new(dispatch.kind)),
            named_kind: None,
            started_at: GILProtected::new(Cell::new(dispatch.started_at)),
            callback: GILProtected::new(Cell::new(Some(dispatch.callback))),
            name: GILProtected::new(Cell::new(None)),
            task_name: GILProtected::new(Cell::new(None)),
        }
    }

    /// Makes a spare state (one `release`d, which nothing else can reach) the state of another
    /// dispatch. Releases only figures (floats and ints: no Python code runs).
    pub fn refill(&self, py: Python<'_>, dispatch: Dispatch) {
        put(
            py,
            &self.callback_wall_time,
            PyFloat::new(py, dispatch.wall_time),
        );
        put(
            py,
            &self.loop_handles_count,
            count(py, dispatch.handles_count),
        );
        put(py, &self.loop_lag, PyFloat::new(py, dispatch.lag));
        self.kind.get(py).set(dispatch.kind);
        self.started_at.get(py).set(dispatch.started_at);
        self.callback.get(py).set(Some(dispatch.callback));
    }

    /// Gives up the callback and the names computed from it, so that a spare state keeps
    /// nothing alive; the caller drops what is returned once it is done with the state (the
    /// drop may run Python code).
    pub fn release(&self, py: Python<'_>) -> [Option<Py<PyAny>>; 3] {
        [
            self.callback.get(py).take(),
            self.name.get(py).take().map(Py::into_any),
            self.task_name.get(py).take(),
        ]
    }

    fn callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        peek(self.callback.get(py), |c| c.map(|c| c.clone_ref(py)))
    }

    /// The task name, computed on the first read.
    fn task_name_of<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(name) = peek(self.task_name.get(py), |n| n.map(|n| n.bind(py).clone())) {
            return Ok(name);
        }
        let name = match self.callback(py) {
            None => py.None().into_bound(py),
            Some(callback) => names::task_name(callback.bind(py))?,
        };
        self.task_name.get(py).set(Some(name.clone().unbind()));
        Ok(name)
    }

    /// The pretty name, computed on the first read.
    fn pretty_name<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        if let Some(name) = peek(self.name.get(py), |n| n.map(|n| n.bind(py).clone())) {
            return Ok(name);
        }
        let name = match self.callback(py) {
            None => PyString::new(py, ""),
            Some(callback) => names::pretty_name(callback.bind(py))?,
        };
        self.name.get(py).set(Some(name.clone().unbind()));
        Ok(name)
    }

    fn kind_of(&self, py: Python<'_>) -> Py<PyString> {
        match &self.named_kind {
            Some(name) => name.clone_ref(py),
            None => kind_name(py, self.kind.get(py).get()),
        }
    }
}

fn member<T>(value: Bound<'_, T>) -> Member<T> {
    GILProtected::new(Cell::new(Some(value.unbind())))
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
        let task_name = task_name.map_or_else(|| py.None(), |t| t.into_any().unbind());
        IoLoopMonitorState {
            callback_wall_time: member(PyFloat::new(py, callback_wall_time)),
            loop_handles_count: member(count(py, loop_handles_count)),
            loop_lag: member(PyFloat::new(py, loop_lag)),
            kind: GILProtected::new(Cell::new(Kind::Callback)),
            named_kind: kind.map(Bound::unbind),
            started_at: GILProtected::new(Cell::new(StartedAt::Seconds(started_at))),
            callback: GILProtected::new(Cell::new(None)),
            name: GILProtected::new(Cell::new(Some(callback_pretty_name.unbind()))),
            task_name: GILProtected::new(Cell::new(Some(task_name))),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The names are strings (or None), the figures numbers: they cannot take part in a
        // cycle.
        peek(self.callback.traverse(visit.clone()), |callback| {
            visit.call(callback)
        })
    }

    /// A readable name for the callback: `Class.method`, a function's qualified name, or for a
    /// task step the task's name and its coroutine's qualified name.
    #[getter]
    fn callback_pretty_name<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        self.pretty_name(py)
    }

    /// What made the callback runnable: "callback", "timer", "io", "threadsafe" or "signal".
    #[getter]
    fn kind(&self, py: Python<'_>) -> Py<PyString> {
        self.kind_of(py)
    }

    /// When the callback started, on the `loop.time()` clock.
    #[getter]
    fn started_at(&self, py: Python<'_>) -> f64 {
        self.started_at.get(py).get().seconds()
    }

    /// The name of the task a task step belongs to, else None.
    #[getter]
    fn task_name<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.task_name_of(py)
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
        Ok(format!(
            "IoLoopMonitorState(callback_wall_time={}, callback_pretty_name={}, loop_handles_count={}, loop_lag={}, kind={}, task_name={}, started_at={})",
            figure(py, &self.callback_wall_time).repr()?,
            self.pretty_name(py)?.repr()?,
            figure(py, &self.loop_handles_count).repr()?,
            figure(py, &self.loop_lag).repr()?,
            self.kind_of(py).bind(py).repr()?,
            self.task_name_of(py)?.repr()?,
            PyFloat::new(py, self.started_at(py)).repr()?,
        ))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Ok(other) = other.downcast::<IoLoopMonitorState>() else {
            return Ok(py.NotImplemented());
        };
        let other = other.get();
        let same = figure(py, &self.callback_wall_time).value()
            == figure(py, &other.callback_wall_time).value()
            && figure(py, &self.loop_handles_count)
                .as_any()
                .eq(figure(py, &other.loop_handles_count))?
            && figure(py, &self.loop_lag).value() == figure(py, &other.loop_lag).value()
            && self.started_at(py) == other.started_at(py)
            && self
                .kind_of(py)
                .bind(py)
                .as_any()
                .eq(other.kind_of(py).bind(py))?
            && self.task_name_of(py)?.eq(other.task_name_of(py)?)?
            && self.pretty_name(py)?.as_any().eq(other.pretty_name(py)?)?;
        same.into_py_any(py)
    }
}
