//! The timer queue: a binary heap of deadlines in nanoseconds, FIFO among equal deadlines.
//!
//! Cancelled timers stay in the heap until they reach its top or until they are more than
//! half of it, when the heap is rebuilt without them (asyncio does the same), so `cancel()`
//! costs a flag and a counter.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

pub struct Entry<T> {
    pub deadline_ns: u64,
    seq: u64,
    pub item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.deadline_ns == other.deadline_ns && self.seq == other.seq
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest deadline, then the first
    // scheduled, on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline_ns
            .cmp(&self.deadline_ns)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Timers that never fire before they are rebuilt away need this many entries before a rebuild
/// is worth it.
const MIN_ENTRIES_FOR_REBUILD: usize = 100;

pub struct TimerQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T> TimerQueue<T> {
    pub fn push(&mut self, deadline_ns: u64, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry {
            deadline_ns,
            seq,
            item,
        });
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops cancelled entries from the top; returns the earliest live deadline.
    pub fn next_deadline(
        &mut self,
        is_cancelled: impl Fn(&T) -> bool,
        mut on_drop: impl FnMut(T),
    ) -> Option<u64> {
        while let Some(top) = self.heap.peek() {
            if is_cancelled(&top.item) {
                let entry = self.heap.pop().expect("peeked");
                on_drop(entry.item);
            } else {
                return Some(top.deadline_ns);
            }
        }
        None
    }

    /// Pops the earliest entry if its deadline is at or before `now_ns`.
    pub fn pop_expired(&mut self, now_ns: u64) -> Option<Entry<T>> {
        if self.heap.peek()?.deadline_ns <= now_ns {
            self.heap.pop()
        } else {
            None
        }
    }

    /// Rebuilds the heap without cancelled entries when they are over half of it.
    pub fn maybe_compact(
        &mut self,
        cancelled: usize,
        is_cancelled: impl Fn(&T) -> bool,
        mut on_drop: impl FnMut(T),
    ) {
        if self.heap.len() >= MIN_ENTRIES_FOR_REBUILD && cancelled * 2 > self.heap.len() {
            let entries = std::mem::take(&mut self.heap).into_vec();
            let mut kept = Vec::with_capacity(entries.len() - cancelled.min(entries.len()));
            for entry in entries {
                if is_cancelled(&entry.item) {
                    on_drop(entry.item);
                } else {
                    kept.push(entry);
                }
            }
            self.heap = BinaryHeap::from(kept);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.heap.iter().map(|e| &e.item)
    }

    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.heap.drain().map(|e| e.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_fifo_among_equal_deadlines() {
        let mut q = TimerQueue::default();
        q.push(30, "c");
        q.push(10, "a1");
        q.push(20, "b");
        q.push(10, "a2");
        let mut order = vec![];
        while let Some(e) = q.pop_expired(100) {
            order.push(e.item);
        }
        assert_eq!(order, ["a1", "a2", "b", "c"]);
    }

    #[test]
    fn nothing_expires_before_its_deadline() {
        let mut q = TimerQueue::default();
        q.push(50, ());
        assert!(q.pop_expired(49).is_none());
        assert!(q.pop_expired(50).is_some());
    }

    #[test]
    fn cancelled_entries_leave_from_the_top_and_by_compaction() {
        let mut q = TimerQueue::default();
        for i in 0..200u64 {
            q.push(i, i);
        }
        let cancelled = |i: &u64| *i < 150;
        let mut dropped = 0;
        q.maybe_compact(150, cancelled, |_| dropped += 1);
        assert_eq!((q.len(), dropped), (50, 150));
        assert_eq!(q.next_deadline(|i| *i == 150, |_| ()), Some(151));
    }
}
