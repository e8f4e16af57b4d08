//! The aggregates the loop keeps over every dispatch, always on: counts, errors and log-linear
//! histograms of wall time and loop lag per kind of dispatch, iterations, and the time spent
//! blocked waiting for events (busy time is the wall-time histograms' sum).
//!
//! Each dispatch records straight into these (a few additions and two bucket increments); they
//! live behind the GIL (no lock), so a snapshot taken with the GIL, from any thread, sees whole
//! dispatches only.

use super::histogram::Histogram;

/// What made a callback runnable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `call_soon` (and everything asyncio schedules through it: task steps, future callbacks).
    Callback = 0,
    /// `call_later`/`call_at`.
    Timer = 1,
    /// A descriptor became readable or writable (fd watchers, transport reads and writes).
    Io = 2,
    /// `call_soon_threadsafe`.
    Threadsafe = 3,
    /// A handler added with `add_signal_handler`.
    Signal = 4,
}

pub const KINDS: usize = 5;

impl Kind {
    pub const ALL: [Kind; KINDS] = [
        Kind::Callback,
        Kind::Timer,
        Kind::Io,
        Kind::Threadsafe,
        Kind::Signal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Callback => "callback",
            Kind::Timer => "timer",
            Kind::Io => "io",
            Kind::Threadsafe => "threadsafe",
            Kind::Signal => "signal",
        }
    }
}

#[derive(Default, Clone)]
pub struct KindMetrics {
    pub errors: u64,
    pub wall: Histogram,
    pub lag: Histogram,
}

impl KindMetrics {
    /// Dispatches of this kind: one wall time recorded each.
    pub fn dispatches(&self) -> u64 {
        self.wall.count()
    }
}

#[derive(Default, Clone)]
pub struct Metrics {
    pub kinds: [KindMetrics; KINDS],
    pub iterations: u64,
    /// Nanoseconds blocked waiting for events (the GIL released).
    pub idle_ns: u64,
}

impl Metrics {
    #[inline]
    pub fn record(&mut self, kind: Kind, wall_ns: u64, lag_ns: u64, failed: bool) {
        let k = &mut self.kinds[kind as usize];
        k.errors += failed as u64;
        k.wall.record(wall_ns);
        k.lag.record(lag_ns);
    }

    pub fn dispatches(&self) -> u64 {
        self.kinds.iter().map(KindMetrics::dispatches).sum()
    }

    pub fn errors(&self) -> u64 {
        self.kinds.iter().map(|k| k.errors).sum()
    }

    /// The wall-time and lag histograms over all kinds.
    pub fn overall(&self) -> (Histogram, Histogram) {
        let (mut wall, mut lag) = (Histogram::default(), Histogram::default());
        for k in &self.kinds {
            wall.merge(&k.wall);
            lag.merge(&k.lag);
        }
        (wall, lag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_kind_and_sums_over_kinds() {
        let mut m = Metrics::default();
        m.record(Kind::Timer, 10, 1, false);
        m.record(Kind::Io, 30, 5, true);
        m.record(Kind::Io, 5, 0, false);
        assert_eq!(m.dispatches(), 3);
        assert_eq!(m.errors(), 1);
        assert_eq!(m.overall().0.sum_ns, 45);
        assert_eq!(m.kinds[Kind::Io as usize].dispatches(), 2);
        let (wall, lag) = m.overall();
        assert_eq!(
            (wall.count(), wall.max_ns, lag.sum_ns, lag.max_ns),
            (3, 30, 6, 5)
        );
    }
}
