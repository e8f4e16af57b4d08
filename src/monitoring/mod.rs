//! Native monitoring: the clock each dispatch is timed with, the per-dispatch report handed to
//! a monitor callback, and the aggregates the loop keeps whether or not a monitor is set.

mod clock;
mod report;
mod state;
mod stats;

pub use clock::{monotonic_ns, seconds_to_deadline_ns, tick, ticks_to_ns};
pub use report::Reporter;
pub use state::IoLoopMonitorState;
pub use stats::DispatchStats;
