//! fd watchers: what `add_reader`/`add_writer` register. Each watched descriptor has at most
//! one reader and one writer handle (a new one replaces the old, as asyncio); libuv's poll
//! handle for it (owned by `uv_sys::Loop`) watches exactly the directions that have one, and
//! is closed as soon as neither is left, so a descriptor closed and reused later gets a fresh
//! registration.
//!
//! libuv's poll callbacks only record `(fd, events)`; the loop turns them into ready handles
//! after libuv returns, so no Python code runs inside libuv.

use std::io;

use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use crate::handles::{refs_in_traverse, Handle};

use uv_sys::{FdMap, PollEvent};
pub use uv_sys::{READABLE, WRITABLE};

#[derive(Default)]
struct Watcher {
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
}

impl Watcher {
    fn slot(&mut self, which: i32) -> &mut Option<Py<Handle>> {
        if which == READABLE {
            &mut self.reader
        } else {
            &mut self.writer
        }
    }

    fn wanted(&self) -> i32 {
        let mut events = 0;
        if self.reader.is_some() {
            events |= READABLE;
        }
        if self.writer.is_some() {
            events |= WRITABLE;
        }
        events
    }
}

#[derive(Default)]
pub struct Watchers {
    map: FdMap<Watcher>,
    /// libuv's reports, drained here each iteration (the allocation is kept).
    events: Vec<PollEvent>,
}

/// What an I/O event made runnable, and the handles found cancelled (to be removed). The loop
/// keeps one and empties it each iteration, so its vectors are allocated once.
#[derive(Default)]
pub struct Fired {
    pub runnable: Vec<Py<Handle>>,
    pub cancelled: Vec<(i32, i32)>,
}

/// Handles taken out of the watchers, to be cancelled and dropped once the lock is released.
pub type Removed = Vec<Py<Handle>>;

impl Watchers {
    /// Sets the reader (`which` = READABLE) or writer of `fd`; returns the handle it replaced.
    pub fn set(
        &mut self,
        event_loop: &mut uv_sys::Loop,
        fd: i32,
        which: i32,
        handle: Py<Handle>,
    ) -> io::Result<Option<Py<Handle>>> {
        let watcher = self.map.entry(fd).or_default();
        let old = watcher.slot(which).replace(handle);
        if let Err(err) = event_loop.watch(fd, watcher.wanted()) {
            // Put things back as they were; the caller still holds the new handle.
            *watcher.slot(which) = old;
            if watcher.wanted() == 0 {
                self.map.remove(&fd);
            }
            return Err(err);
        }
        Ok(old)
    }

    /// Removes the reader or writer of `fd`: the removed handle, plus (if the descriptor could
    /// not be watched any more) the other direction's, which goes too.
    pub fn remove(&mut self, event_loop: &mut uv_sys::Loop, fd: i32, which: i32) -> Removed {
        let Some(watcher) = self.map.get_mut(&fd) else {
            return Vec::new();
        };
        let Some(old) = watcher.slot(which).take() else {
            return Vec::new();
        };
        let mut removed = vec![old];
        let wanted = watcher.wanted();
        if wanted == 0 || event_loop.watch(fd, wanted).is_err() {
            let _ = event_loop.watch(fd, 0);
            if let Some(w) = self.map.remove(&fd) {
                removed.extend(w.reader);
                removed.extend(w.writer);
            }
        }
        removed
    }

    /// Adds what libuv reported since the last call to `fired`, as runnable handles.
    pub fn fired(&mut self, event_loop: &mut uv_sys::Loop, py: Python<'_>, fired: &mut Fired) {
        let Watchers { map, events } = self;
        event_loop.drain_events(events);
        for (fd, result) in events.drain(..) {
            let Some(watcher) = map.get(&fd) else {
                continue;
            };
            if result.is_err() {
                // libuv stops a poll handle that reported an error (POLLERR, e.g. a datagram
                // socket's ICMP unreachable, comes as EBADF); a selector keeps watching, so
                // re-arm it (rewatch leaves a descriptor that is really closed alone).
                event_loop.rewatch(fd);
            }
            // An error wakes both sides: their next read or write reports it, as with a
            // selector.
            let mask = result.unwrap_or(READABLE | WRITABLE);
            for (which, slot) in [(READABLE, &watcher.reader), (WRITABLE, &watcher.writer)] {
                if mask & which == 0 {
                    continue;
                }
                if let Some(handle) = slot {
                    if handle.get().inner.is_cancelled() {
                        fired.cancelled.push((fd, which));
                    } else {
                        fired.runnable.push(handle.clone_ref(py));
                    }
                }
            }
        }
    }

    /// `(events, reader, writer)` of `fd`, for the selector view asyncio's reprs read.
    #[allow(clippy::type_complexity)]
    pub fn state(
        &self,
        py: Python<'_>,
        fd: i32,
    ) -> Option<(i32, Option<Py<Handle>>, Option<Py<Handle>>)> {
        self.map.get(&fd).map(|w| {
            (
                w.wanted(),
                w.reader.as_ref().map(|h| h.clone_ref(py)),
                w.writer.as_ref().map(|h| h.clone_ref(py)),
            )
        })
    }

    /// Descriptors watched now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// What the watching handles hold, for the loop's traversal (handles are not tracked by
    /// the collector themselves; see `handles.rs`).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for w in self.map.values() {
            for handle in w.reader.iter().chain(w.writer.iter()) {
                handle
                    .get()
                    .inner
                    .visit_if_owned(refs_in_traverse(handle), visit)?;
            }
        }
        Ok(())
    }

    /// Forgets every watcher (the libuv loop closes the poll handles); returns their handles.
    pub fn close_all(&mut self, event_loop: &mut uv_sys::Loop) -> Removed {
        let mut handles = Vec::new();
        for (fd, w) in self.map.drain() {
            let _ = event_loop.watch(fd, 0);
            handles.extend(w.reader);
            handles.extend(w.writer);
        }
        handles
    }
}
