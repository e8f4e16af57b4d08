//! Aggregates over every dispatch, kept natively and always on. The dispatch loop bumps a
//! local copy and folds it into the loop's totals once per iteration (tokio's batching), so an
//! observation costs a few additions.

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatchStats {
    pub dispatches: u64,
    pub errors: u64,
    pub busy_ns: u64,
    pub max_wall_ns: u64,
    pub lag_ns: u64,
    pub max_lag_ns: u64,
    pub iterations: u64,
}

impl DispatchStats {
    #[inline]
    pub fn record(&mut self, wall_ns: u64, lag_ns: u64) {
        self.dispatches += 1;
        self.busy_ns += wall_ns;
        self.max_wall_ns = self.max_wall_ns.max(wall_ns);
        self.lag_ns += lag_ns;
        self.max_lag_ns = self.max_lag_ns.max(lag_ns);
    }

    pub fn merge(&mut self, other: &DispatchStats) {
        self.dispatches += other.dispatches;
        self.errors += other.errors;
        self.busy_ns += other.busy_ns;
        self.max_wall_ns = self.max_wall_ns.max(other.max_wall_ns);
        self.lag_ns += other.lag_ns;
        self.max_lag_ns = self.max_lag_ns.max(other.max_lag_ns);
        self.iterations += other.iterations;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_totals_and_keeps_maxima() {
        let mut a = DispatchStats::default();
        a.record(10, 1);
        let mut b = DispatchStats::default();
        b.record(30, 5);
        b.record(5, 0);
        a.merge(&b);
        assert_eq!(
            (
                a.dispatches,
                a.busy_ns,
                a.max_wall_ns,
                a.lag_ns,
                a.max_lag_ns
            ),
            (3, 45, 30, 6, 5)
        );
    }
}
