//! Native monitoring: the clock each dispatch is timed with, what a dispatch ran (for busy time
//! per callable), the aggregates the loop keeps whether or not a monitor is set (histograms by
//! kind, slow callbacks, top callbacks), the per-dispatch report handed to a monitor callback,
//! and the watchdog's probe.

mod aggregates;
mod callee;
mod clock;
mod histogram;
mod metrics;
pub mod names;
mod report;
pub mod slow;
mod state;
mod top;
pub mod watchdog;

pub use aggregates::Aggregates;
pub use callee::Key;
pub use clock::{calibrate, loop_time_at, monotonic_ns, seconds_to_deadline_ns, tick, ticks_to_ns};
pub use histogram::{Histogram, SUB_BITS as HISTOGRAM_SUB_BITS};
pub use metrics::Kind;
pub use report::Reporter;
pub use state::{install_members, IoLoopMonitorState, StartedAt};
pub use watchdog::Probe;
