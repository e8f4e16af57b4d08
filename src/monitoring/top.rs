//! Busy time per callable: count, total and longest wall time for each thing the loop ran,
//! keyed by a pointer (a function's code object; for a task step, its coroutine's code object;
//! otherwise a type or C function), named only when read. Bounded: when full, a new callable
//! evicts the one with the least busy time (the "space-saving" rule, so heavy hitters stay).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::prelude::*;

/// How many callables are tracked at once.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Keys are object addresses: multiply and keep the high bits (Fibonacci hashing).
#[derive(Default)]
pub struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

pub type PtrMap<V> = HashMap<usize, V, BuildHasherDefault<PtrHasher>>;

pub struct TopEntry {
    pub count: u64,
    pub busy_ns: u64,
    pub max_ns: u64,
    /// What names the entry when read: a code object, or a name string.
    pub namer: Py<PyAny>,
}

/// Slots of the direct-mapped cache in front of the index: a callable that ran recently is
/// found without hashing.
const RECENT: usize = 64;
/// After a slow step, how many of a coroutine's next steps note where they resume from (a
/// Python call each, so bounded: a service whose handler was slow once does not pay for it on
/// every request from then on).
const WATCHED_STEPS: u32 = 256;
/// A `recent` slot that names no key (0 could be one, and the cache would then point at an
/// entry that is gone).
const NO_RECENT: (usize, usize) = (usize::MAX, 0);

pub struct TopCallbacks {
    entries: Vec<(usize, TopEntry)>,
    /// Key -> position in `entries`.
    index: PtrMap<usize>,
    recent: [(usize, usize); RECENT],
    /// Coroutine code objects that ran a slow step, with how many of their next steps still
    /// note the line they resume from (so that a slow step can be reported as a span of lines).
    watched: PtrMap<u32>,
}

impl Default for TopCallbacks {
    fn default() -> Self {
        TopCallbacks {
            entries: Vec::new(),
            index: PtrMap::default(),
            recent: [NO_RECENT; RECENT],
            watched: PtrMap::default(),
        }
    }
}

#[inline]
fn recent_slot(key: usize) -> usize {
    // Objects are at least 16-byte aligned: skip the low bits.
    (key >> 4) & (RECENT - 1)
}

impl TopCallbacks {
    /// Adds a dispatch to an existing entry; false if `key` has none yet.
    #[inline]
    pub fn add(&mut self, key: usize, wall_ns: u64) -> bool {
        let slot = recent_slot(key);
        let position = match self.recent[slot] {
            (k, position) if k == key => position,
            _ => match self.index.get(&key) {
                Some(&position) => {
                    self.recent[slot] = (key, position);
                    position
                }
                None => return false,
            },
        };
        let e = &mut self.entries[position].1;
        e.count += 1;
        e.busy_ns += wall_ns;
        e.max_ns = e.max_ns.max(wall_ns);
        true
    }

    /// Starts an entry for `key`; returns the evicted entry's namer, to be dropped by the caller
    /// once it no longer holds the aggregates.
    pub fn insert(&mut self, key: usize, wall_ns: u64, namer: Py<PyAny>) -> Option<Py<PyAny>> {
        let entry = TopEntry {
            count: 1,
            busy_ns: wall_ns,
            max_ns: wall_ns,
            namer,
        };
        if let Some(&position) = self.index.get(&key) {
            let old = std::mem::replace(&mut self.entries[position].1, entry);
            return Some(old.namer);
        }
        let mut evicted = None;
        if self.entries.len() >= DEFAULT_CAPACITY {
            let cheapest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, e))| e.busy_ns)
                .map(|(position, _)| position);
            if let Some(position) = cheapest {
                let (gone, old) = self.entries.swap_remove(position);
                self.index.remove(&gone);
                self.watched.remove(&gone);
                if let Some((moved, _)) = self.entries.get(position) {
                    self.index.insert(*moved, position);
                }
                self.recent = [NO_RECENT; RECENT];
                evicted = Some(old.namer);
            }
        }
        self.index.insert(key, self.entries.len());
        self.entries.push((key, entry));
        evicted
    }

    /// Whether this step of a watched coroutine notes where it resumes from (counting it).
    #[inline]
    pub fn take_watch(&mut self, key: usize) -> bool {
        if self.watched.is_empty() {
            return false;
        }
        match self.watched.get_mut(&key) {
            Some(left) if *left > 1 => {
                *left -= 1;
                true
            }
            Some(_) => {
                self.watched.remove(&key);
                true
            }
            None => false,
        }
    }

    pub fn watch(&mut self, key: usize) {
        if self.watched.len() < DEFAULT_CAPACITY || self.watched.contains_key(&key) {
            self.watched.insert(key, WATCHED_STEPS);
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = &TopEntry> {
        self.entries.iter().map(|(_, e)| e)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys as the loop makes them: object addresses, 16-byte aligned, never 0.
    fn key(i: usize) -> usize {
        0x7f00_0000_0000 + 16 * i
    }

    #[test]
    fn full_table_evicts_the_least_busy() {
        pyo3::prepare_freethreaded_python();
        Python::with_gil(|py| {
            let mut top = TopCallbacks::default();
            for i in 0..DEFAULT_CAPACITY {
                assert!(top.insert(key(i), 10 + i as u64, py.None()).is_none());
            }
            assert!(top.add(key(5), 1000));
            assert!(!top.add(key(DEFAULT_CAPACITY), 1));
            let evicted = top.insert(key(DEFAULT_CAPACITY), 1, py.None());
            assert!(evicted.is_some());
            assert_eq!(top.len(), DEFAULT_CAPACITY);
            // Key 0 had the least busy time; key 5 (now heavy) stays, as does the newcomer.
            assert!(!top.add(key(0), 1));
            assert!(top.add(key(5), 1));
            assert!(top.add(key(DEFAULT_CAPACITY), 1));
        });
    }

    #[test]
    fn counts_land_on_their_own_entries_through_the_recent_cache() {
        pyo3::prepare_freethreaded_python();
        Python::with_gil(|py| {
            let mut top = TopCallbacks::default();
            // Keys 64 slots apart share a slot of the direct-mapped cache.
            let (a, b) = (key(1), key(1 + RECENT));
            top.insert(a, 1, py.None());
            top.insert(b, 2, py.None());
            for _ in 0..3 {
                assert!(top.add(a, 10));
                assert!(top.add(b, 100));
            }
            let mut busy: Vec<u64> = top.entries().map(|e| e.busy_ns).collect();
            busy.sort_unstable();
            assert_eq!(busy, vec![31, 302]);
        });
    }
}
