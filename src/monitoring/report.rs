//! Handing each dispatch's figures to the user's monitor callback. A monitor that raises is
//! logged (at most once a second, with a count of what was suppressed) and the loop goes on.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pyo3::intern;
use pyo3::prelude::*;

use super::clock::monotonic_ns;
use super::metrics::Kind;
use super::state::{IoLoopMonitorState, StartedAt};
use crate::context::is_fatal;

const LOG_INTERVAL_NS: u64 = 1_000_000_000;

#[derive(Default)]
pub struct Reporter {
    last_log_ns: AtomicU64,
    suppressed: AtomicU64,
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
        let state = IoLoopMonitorState::for_dispatch(
            py,
            callback,
            kind,
            wall_ns as f64 * 1e-9,
            handles_count,
            lag_ns as f64 * 1e-9,
            started_at,
        );
        let outcome = Py::new(py, state).and_then(|s| monitor.bind(py).call1((s,)).map(drop));
        match outcome {
            Err(err) if is_fatal(py, &err) => Err(err),
            Err(err) => {
                self.log_failure(py, err);
                Ok(())
            }
            Ok(()) => Ok(()),
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
