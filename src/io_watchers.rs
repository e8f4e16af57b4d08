//! fd watchers: what `add_reader`/`add_writer` register. One libuv poll handle per descriptor
//! carries at most one reader and one writer handle (a new one replaces the old, as asyncio);
//! the handle is closed as soon as neither is left, so a descriptor closed and reused later
//! gets a fresh registration.
//!
//! libuv's poll callbacks only record `(fd, events)`; the loop turns them into ready handles
//! after libuv returns, so no Python code runs inside libuv.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use crate::handles::Handle;

pub use uv_sys::{READABLE, WRITABLE};

type Events = Arc<Mutex<Vec<(i32, io::Result<i32>)>>>;

struct Watcher {
    poll: uv_sys::Poll,
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
    map: HashMap<i32, Watcher>,
    events: Events,
}

/// What an I/O event made runnable, and the handles found cancelled (to be removed).
#[derive(Default)]
pub struct Fired {
    pub runnable: Vec<Py<Handle>>,
    pub cancelled: Vec<(i32, i32)>,
}

impl Watchers {
    /// Sets the reader (`which` = READABLE) or writer of `fd`; returns the handle it replaced.
    pub fn set(
        &mut self,
        event_loop: &mut uv_sys::Loop,
        fd: i32,
        which: i32,
        handle: Py<Handle>,
    ) -> io::Result<Option<Py<Handle>>> {
        if !self.map.contains_key(&fd) {
            let events = self.events.clone();
            let poll = uv_sys::Poll::new(
                event_loop,
                fd,
                Box::new(move |result| {
                    events
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((fd, result));
                }),
            )?;
            self.map.insert(
                fd,
                Watcher {
                    poll,
                    reader: None,
                    writer: None,
                },
            );
        }
        let watcher = self.map.get_mut(&fd).expect("inserted above");
        let old = watcher.slot(which).replace(handle);
        let wanted = watcher.wanted();
        if let Err(err) = watcher.poll.set_events(wanted) {
            let new = std::mem::replace(watcher.slot(which), old);
            if watcher.wanted() == 0 {
                self.map.remove(&fd);
            }
            drop(new);
            return Err(err);
        }
        Ok(old)
    }

    /// Removes the reader or writer of `fd`; returns it if there was one.
    pub fn remove(&mut self, fd: i32, which: i32) -> Option<Py<Handle>> {
        let watcher = self.map.get_mut(&fd)?;
        let old = watcher.slot(which).take()?;
        let wanted = watcher.wanted();
        if wanted == 0 || watcher.poll.set_events(wanted).is_err() {
            // Dropping the poll closes it: nothing is left to watch on this descriptor.
            if let Some(w) = self.map.remove(&fd) {
                let (reader, writer) = (w.reader, w.writer);
                drop(w.poll);
                drop((reader, writer));
            }
        }
        Some(old)
    }

    /// Turns what libuv reported since the last call into runnable handles.
    pub fn fired(&mut self, py: Python<'_>) -> Fired {
        let events = std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()));
        let mut fired = Fired::default();
        for (fd, result) in events {
            let Some(watcher) = self.map.get_mut(&fd) else {
                continue;
            };
            if result.is_err() {
                // libuv stops a poll handle that reported an error (POLLERR, e.g. a datagram
                // socket's ICMP unreachable); a selector keeps watching, so re-arm it.
                let wanted = watcher.wanted();
                let _ = watcher.poll.set_events(wanted);
            }
            // An error (the descriptor hung up or went bad) wakes both sides: their next
            // read or write reports it, as with a selector.
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
        fired
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
                w.poll.events(),
                w.reader.as_ref().map(|h| h.clone_ref(py)),
                w.writer.as_ref().map(|h| h.clone_ref(py)),
            )
        })
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for w in self.map.values() {
            visit.call(&w.reader)?;
            visit.call(&w.writer)?;
        }
        Ok(())
    }

    /// Closes every poll handle (before the libuv loop goes); returns the handles to drop.
    pub fn close_all(&mut self) -> Vec<Py<Handle>> {
        let mut handles = Vec::new();
        for (_, w) in self.map.drain() {
            handles.extend(w.reader);
            handles.extend(w.writer);
            drop(w.poll);
        }
        handles
    }
}
