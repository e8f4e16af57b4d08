//! Clocks. Durations on the dispatch path (wall time, ready-handle lag) are measured in TSC
//! ticks through `quanta` (a read costs about a third of `clock_gettime` here); anything compared
//! with `loop.time()` (timer deadlines) uses the monotonic clock, the same one as
//! `time.monotonic()`. Where quanta finds no usable TSC, its ticks are monotonic nanoseconds.

use std::sync::OnceLock;

use pyo3::Python;

/// The tick source, and its rate as nanoseconds per 2^32 ticks (a TSC's calibrated rate, or
/// exactly 2^32 where the ticks are monotonic nanoseconds): one multiply and a fixed shift per
/// conversion, where quanta's own branches on its clock kind and shifts by a variable amount.
struct TickClock {
    source: quanta::Clock,
    ns_per_2_32_ticks: u64,
}

static CLOCK: OnceLock<TickClock> = OnceLock::new();

#[inline]
fn clock() -> &'static TickClock {
    CLOCK.get_or_init(|| {
        let source = quanta::Clock::new();
        let ns_per_2_32_ticks = source.delta_as_nanos(0, 1 << 32);
        TickClock {
            source,
            ns_per_2_32_ticks,
        }
    })
}

/// Calibrates the tick clock if nothing has yet: quanta spins for 0.5 ms to 200 ms (longer on
/// a busy machine) comparing the TSC with the monotonic clock. Done with the GIL released, so
/// that other threads run meanwhile.
pub fn calibrate(py: Python<'_>) {
    if CLOCK.get().is_none() {
        py.allow_threads(|| {
            clock();
        });
    }
}

/// A raw tick count, only meaningful relative to another tick.
#[inline]
pub fn tick() -> u64 {
    clock().source.raw()
}

/// Nanoseconds from `start` to `end` (0 if `end` is not later). Truncated to 64 bits as
/// quanta's own conversion is: exact below 2^63 ticks at any rate above half a gigahertz.
#[inline]
pub fn ticks_to_ns(start: u64, end: u64) -> u64 {
    let ticks = end.saturating_sub(start) as u128;
    ((ticks * clock().ns_per_2_32_ticks as u128) >> 32) as u64
}

/// Nanoseconds of the monotonic clock (`time.monotonic()`, `loop.time()`).
#[inline]
pub fn monotonic_ns() -> u64 {
    uv_sys::hrtime_ns()
}

/// `loop.time()`, in seconds, at which the tick `at` was read, given a monotonic-clock reading
/// and the tick read with it (`time_ref`).
pub fn loop_time_at(at: u64, time_ref: (u64, u64)) -> f64 {
    let (mono, reference) = time_ref;
    let ns = if at >= reference {
        mono + ticks_to_ns(reference, at)
    } else {
        mono.saturating_sub(ticks_to_ns(at, reference))
    };
    ns as f64 * 1e-9
}

/// Converts a `loop.time()` value (seconds) to monotonic nanoseconds, rounding up so that a
/// timer compared against `monotonic_ns()` never fires before its `when`. NaN and negatives map
/// to 0.
pub fn seconds_to_deadline_ns(when: f64) -> u64 {
    if when.is_nan() || when <= 0.0 {
        0
    } else {
        // `as` saturates: an infinite or huge deadline becomes u64::MAX, i.e. never.
        (when * 1e9).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_and_saturate() {
        assert_eq!(seconds_to_deadline_ns(1.5), 1_500_000_000);
        assert_eq!(seconds_to_deadline_ns(f64::NAN), 0);
        assert_eq!(seconds_to_deadline_ns(-3.0), 0);
        assert_eq!(seconds_to_deadline_ns(f64::INFINITY), u64::MAX);
        assert!(seconds_to_deadline_ns(0.1) >= 100_000_000);
    }

    #[test]
    fn tick_conversion_agrees_with_quanta() {
        let source = &clock().source;
        for delta in [0, 1, 999, 1 << 20, 3_000_000_000, 1 << 45] {
            let ours = ticks_to_ns(5, 5 + delta) as f64;
            let theirs = source.delta_as_nanos(5, 5 + delta) as f64;
            assert!(
                (ours - theirs).abs() <= 1.0 + theirs * 1e-9,
                "{delta}: {ours} vs {theirs}"
            );
        }
    }

    #[test]
    fn ticks_measure_about_the_same_as_the_monotonic_clock() {
        let (t0, m0) = (tick(), monotonic_ns());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (t1, m1) = (tick(), monotonic_ns());
        let by_ticks = ticks_to_ns(t0, t1) as f64;
        let by_mono = (m1 - m0) as f64;
        assert!(
            (by_ticks / by_mono - 1.0).abs() < 0.05,
            "{by_ticks} vs {by_mono}"
        );
        assert_eq!(ticks_to_ns(t1, t0), 0);
    }
}
