//! Which loop a handle counts its cancellation with: a process-wide table of the live loops'
//! cancel counts, one slot per loop, each slot with a generation. A handle keeps its loop's
//! `LoopSlot` (6 bytes, which fit beside its two flags) instead of an `Arc` to the counts (8
//! bytes, and a locked increment and decrement per handle); a handle that outlives its loop
//! finds the slot's generation changed and counts nothing.
//!
//! The table lives behind the GIL, as the handles and loops that use it do.

use std::cell::RefCell;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::GILProtected;

use crate::handles::CancelCounts;

struct Slot {
    generation: u32,
    counts: Option<Arc<CancelCounts>>,
}

static SLOTS: GILProtected<RefCell<Vec<Slot>>> = GILProtected::new(RefCell::new(Vec::new()));

/// A loop's place in the table, as its handles keep it. Packed to 6 bytes, so that a handle's
/// two flags fit beside it in one word (its fields are only ever copied, never borrowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, packed(2))]
pub struct LoopSlot {
    index: u16,
    generation: u32,
}

/// More loops than that alive at once get no slot: their handles' cancellations are not
/// counted, so their pending-handle counts include cancelled handles until these leave the
/// queues (as they would with no counts at all).
const MAX_SLOTS: usize = u16::MAX as usize;

impl LoopSlot {
    /// No slot (see `MAX_SLOTS`).
    const NONE: LoopSlot = LoopSlot {
        index: u16::MAX,
        generation: 0,
    };

    /// A slot for a new loop's counts, until `release`.
    pub fn register(py: Python<'_>, counts: &Arc<CancelCounts>) -> LoopSlot {
        let mut slots = SLOTS.get(py).borrow_mut();
        let index = match slots.iter().position(|s| s.counts.is_none()) {
            Some(free) => free,
            None if slots.len() < MAX_SLOTS => {
                slots.push(Slot {
                    generation: 0,
                    counts: None,
                });
                slots.len() - 1
            }
            None => return LoopSlot::NONE,
        };
        let slot = &mut slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        slot.counts = Some(counts.clone());
        LoopSlot {
            index: index as u16,
            generation: slot.generation,
        }
    }

    /// Calls `count` with the counts of the loop this slot was given to, if it is still
    /// registered.
    #[inline]
    pub fn with_counts(self, py: Python<'_>, count: impl FnOnce(&CancelCounts)) {
        let slots = SLOTS.get(py).borrow();
        if let Some(slot) = slots.get(self.index as usize) {
            if let (true, Some(counts)) = (slot.generation == self.generation, &slot.counts) {
                count(counts);
            }
        }
    }

    /// Frees the slot (its loop is gone): handles still holding it count nothing from now on.
    pub fn release(self, py: Python<'_>) {
        let freed = {
            let mut slots = SLOTS.get(py).borrow_mut();
            match slots.get_mut(self.index as usize) {
                Some(slot) if slot.generation == self.generation => slot.counts.take(),
                _ => None,
            }
        };
        // Outside the borrow, although dropping counts runs no Python code.
        drop(freed);
    }
}

/// A loop's registration, released when the loop goes.
pub struct Registered(pub LoopSlot);

impl Drop for Registered {
    fn drop(&mut self) {
        Python::with_gil(|py| self.0.release(py));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn a_released_slot_counts_nothing_and_is_reused_with_a_new_generation() {
        pyo3::prepare_freethreaded_python();
        Python::with_gil(|py| {
            let first = Arc::new(CancelCounts::default());
            let slot = LoopSlot::register(py, &first);
            slot.with_counts(py, |c| {
                c.ready.fetch_add(1, Relaxed);
            });
            assert_eq!(first.ready.load(Relaxed), 1);
            slot.release(py);
            slot.with_counts(py, |c| {
                c.ready.fetch_add(1, Relaxed);
            });
            assert_eq!(first.ready.load(Relaxed), 1);
            let second = Arc::new(CancelCounts::default());
            let reused = LoopSlot::register(py, &second);
            assert_ne!(reused, slot);
            // The stale slot does not reach the loop that now has its place.
            slot.with_counts(py, |c| {
                c.ready.fetch_add(1, Relaxed);
            });
            assert_eq!(second.ready.load(Relaxed), 0);
            reused.release(py);
            // Released twice (a stale copy): no effect.
            slot.release(py);
        });
    }
}
