//! Everything the loop accumulates about its dispatches, in one place behind the GIL: the
//! metrics (counts and histograms), busy time per callable, and the ring of slow callbacks.
//!
//! The dispatch path borrows it for a few additions at a time and never runs Python code while
//! it does, so a snapshot (which borrows it to copy) can come from any thread, or from a callback
//! of the loop itself, and sees whole dispatches only.

use std::collections::{HashMap, VecDeque};

use pyo3::prelude::*;

use super::metrics::Metrics;
use super::top::TopCallbacks;

pub const DEFAULT_SLOW_CAPACITY: usize = 256;
/// Distinct names counted for slow callbacks; further names are counted under `OTHER_NAME`.
const SLOW_NAMES_CAPACITY: usize = 1024;
const OTHER_NAME: &str = "<other>";

/// The latest slow callbacks (oldest first) and how many there were per name.
pub struct SlowLog {
    pub records: VecDeque<Py<PyAny>>,
    pub capacity: usize,
    pub total: u64,
    pub counts: HashMap<String, u64>,
}

impl Default for SlowLog {
    fn default() -> Self {
        SlowLog {
            records: VecDeque::new(),
            capacity: DEFAULT_SLOW_CAPACITY,
            total: 0,
            counts: HashMap::new(),
        }
    }
}

impl SlowLog {
    /// Adds a record; returns the one pushed out of the ring, to be dropped by the caller.
    pub fn push(&mut self, record: Py<PyAny>, name: String) -> Option<Py<PyAny>> {
        self.total += 1;
        let known = self.counts.len() < SLOW_NAMES_CAPACITY || self.counts.contains_key(&name);
        let key = if known { name } else { OTHER_NAME.to_owned() };
        *self.counts.entry(key).or_default() += 1;
        self.records.push_back(record);
        if self.records.len() > self.capacity {
            self.records.pop_front()
        } else {
            None
        }
    }

    /// Changes the ring's size; returns what no longer fits.
    pub fn resize(&mut self, capacity: usize) -> Vec<Py<PyAny>> {
        self.capacity = capacity;
        let excess = self.records.len().saturating_sub(capacity);
        self.records.drain(..excess).collect()
    }
}

#[derive(Default)]
pub struct Aggregates {
    pub metrics: Metrics,
    pub top: TopCallbacks,
    pub slow: SlowLog,
    /// A monotonic-clock reading and the tick read with it: turns a tick into `loop.time()`.
    pub time_ref: (u64, u64),
}
