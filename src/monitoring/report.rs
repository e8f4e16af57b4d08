//! Handing each dispatch's figures to the user's monitor callback. A monitor that raises is
//! logged (at most once a second, with a count of what was suppressed) and the loop goes on.
//! The state a monitor let go of is kept and refilled for the next report.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILProtected;

use super::clock::monotonic_ns;
use super::metrics::Kind;
use super::state::{Dispatch, IoLoopMonitorState, StartedAt};
use crate::context::is_fatal;
use crate::reuse::unshared;

const LOG_INTERVAL_NS: u64 = 1_000_000_000;

pub struct Reporter {
    last_log_ns: AtomicU64,
    suppressed: AtomicU64,
    /// The last report's state, if the monitor kept no reference to it; taken out while a
    /// report runs (a report inside the monitor makes its own).
    spare: GILProtected<Cell<Option<Py<IoLoopMonitorState>>>>,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter {
            last_log_ns: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            spare: GILProtected::new(Cell::new(None)),
        }
    }
}

impl Reporter {
    /// Calls `monitor(state)`; whatever the monitor does, the loop goes on, except for
    /// KeyboardInterrupt and SystemExit, which are returned to end the run as anywhere else.
    #[allow(clippy::too_many_arguments)]
    pub fn report(
        &self,
        py: Python<'_>,
        monitor: &Py<PyAny>,
        callback: Py<PyAny>,
        kind: Kind,
        wall_ns: u64,
        handles_count: usize,
        lag_ns: u64,
        started_at: StartedAt,
    ) -> PyResult<()> {
        let dispatch = Dispatch {
            callback,
            kind,
            wall_time: wall_ns as f64 * 1e-9,
            handles_count,
            lag: lag_ns as f64 * 1e-9,
            started_at,
        };
        let state = match self.spare.get(py).take() {
            // Checked again: code run since it was kept may have taken a reference to it.
            Some(spare) if unshared(py, &spare) => {
                spare.get().refill(py, dispatch);
                Ok(spare)
            }
            other => {
                drop(other);
                Py::new(py, IoLoopMonitorState::for_dispatch(py, dispatch))
            }
        };
        let outcome = state.and_then(|state| {
            let called = monitor.bind(py).call1((&state,)).map(drop);
            self.keep_if_unshared(py, state);
            called
        });
        match outcome {
            Err(err) if is_fatal(py, &err) => Err(err),
            Err(err) => {
                self.log_failure(py, err);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Keeps `state` for the next report if the monitor kept no reference to it.
    fn keep_if_unshared(&self, py: Python<'_>, state: Py<IoLoopMonitorState>) {
        if !unshared(py, &state) {
            state.drop_ref(py);
            return;
        }
        let released = state.get().release(py);
        self.spare.get(py).set(Some(state));
        // Released once the state is kept: the callback's last reference may run Python code.
        for object in released.into_iter().flatten() {
            object.drop_ref(py);
        }
    }

    fn log_failure(&self, py: Python<'_>, err: PyErr) {
        let now = monotonic_ns();
        let last = self.last_log_ns.load(Relaxed);
        if last != 0 && now.saturating_sub(last) < LOG_INTERVAL_NS {
            self.suppressed.fetch_add(1, Relaxed);
            return;
        }
        self.last_log_ns.store(now, Relaxed);
        let suppressed = self.suppressed.swap(0, Relaxed);
        let logged = (|| -> PyResult<()> {
            let logger = py
                .import(intern!(py, "logging"))?
                .call_method1(intern!(py, "getLogger"), ("monitored_ioloop",))?;
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("exc_info", err.value(py))?;
            logger.call_method(
                intern!(py, "warning"),
                (
                    "Monitor callback failed (%d similar failures since the last report)",
                    suppressed,
                ),
                Some(&kwargs),
            )?;
            Ok(())
        })();
        if let Err(log_err) = logged {
            // Logging itself failed (e.g. during interpreter shutdown): nothing sensible is
            // left to do but not let it escape into the loop.
            drop(log_err);
        }
    }
}
