//! The one clock every timing uses: nanoseconds of the monotonic clock, the same clock as
//! `time.monotonic()` and `loop.time()`, so timer deadlines and dispatch times compare directly.

/// Reads the monotonic clock. The dispatch loop reads it once per dispatch: one dispatch's end
/// is the next one's start.
#[inline]
pub fn now_ns() -> u64 {
    uv_sys::hrtime_ns()
}

/// Converts a `loop.time()` value (seconds) to the clock's nanoseconds, rounding up so that a
/// timer compared against `now_ns()` never fires before its `when`. NaN and negatives map to 0.
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
}
