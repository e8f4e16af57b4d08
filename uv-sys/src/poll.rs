//! `Poll`: a `uv_poll_t` watching one descriptor, owned by the `Loop` it belongs to (see
//! `Loop::watch`), which is what keeps it from outliving the loop.
//!
//! The handle lives in a boxed allocation that libuv points at through `data`; `Poll` owns it
//! until dropped, after which libuv's close callback frees it. Changing the watched events goes
//! through uv_poll_start, which removes and re-adds the descriptor (never an epoll MOD on a
//! descriptor that might have been closed and reused).

use std::io;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use libuv_sys2 as sys;

use crate::error::check;

pub const READABLE: i32 = sys::uv_poll_event_UV_READABLE as i32;
pub const WRITABLE: i32 = sys::uv_poll_event_UV_WRITABLE as i32;

/// Where poll callbacks record `(fd, events or error)` for the owner to collect.
pub(crate) type PollEvents = Arc<Mutex<Vec<(i32, io::Result<i32>)>>>;

struct Inner {
    handle: MaybeUninit<sys::uv_poll_t>,
    fd: i32,
    events: PollEvents,
}

pub(crate) struct Poll {
    inner: *mut Inner,
    watched: i32,
}

extern "C" fn on_poll(handle: *mut sys::uv_poll_t, status: i32, events: i32) {
    // SAFETY: `data` points at the live `Inner` this handle belongs to; libuv calls back only
    // between start and close, while `Poll` (or the pending close) keeps it allocated.
    let inner = unsafe { &*((*handle).data as *const Inner) };
    let result = check(status).map(|_| events & (READABLE | WRITABLE));
    inner
        .events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((inner.fd, result));
}

extern "C" fn on_close(handle: *mut sys::uv_handle_t) {
    // SAFETY: `data` holds the pointer `Poll::new` leaked from a Box; libuv calls this once,
    // after which nothing refers to the handle.
    unsafe {
        drop(Box::from_raw((*handle).data as *mut Inner));
    }
}

impl Poll {
    /// Watches `fd` on the loop at `event_loop` (which must outlive it: the `Loop` owns it).
    pub(crate) fn new(
        event_loop: *mut sys::uv_loop_t,
        fd: i32,
        events: PollEvents,
    ) -> io::Result<Poll> {
        // uv_poll_init switches the descriptor to non-blocking mode; asyncio's add_reader leaves
        // it as it was (a watched stdin must stay blocking for the terminal), and epoll does not
        // need it, so the flag is put back.
        // SAFETY: F_GETFL only reads the descriptor's flags; a bad fd returns -1 (checked).
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let inner = Box::into_raw(Box::new(Inner {
            handle: MaybeUninit::uninit(),
            fd,
            events,
        }));
        // SAFETY: `inner` is a fresh, never-moving allocation; the handle is initialised by
        // uv_poll_init (on the caller's live loop) before any other use, and `data` is set
        // right after.
        let status = unsafe {
            let handle = (*inner).handle.as_mut_ptr();
            let status = sys::uv_poll_init(event_loop, handle, fd);
            if status == 0 {
                (*handle).data = inner.cast();
            }
            status
        };
        if let Err(err) = check(status) {
            // SAFETY: init failed, so libuv never saw the handle: the Box is ours to free.
            unsafe { drop(Box::from_raw(inner)) };
            return Err(err);
        }
        if flags & libc::O_NONBLOCK == 0 {
            // SAFETY: restores the flags read above on the same, still open, descriptor.
            unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
        }
        Ok(Poll { inner, watched: 0 })
    }

    /// The events currently watched.
    pub(crate) fn events(&self) -> i32 {
        self.watched
    }

    /// Watches exactly `events` (0 stops watching).
    pub(crate) fn set_events(&mut self, events: i32) -> io::Result<()> {
        // SAFETY: the handle is initialised and not closed (closing consumes `self`).
        let status = unsafe {
            let handle = (*self.inner).handle.as_mut_ptr();
            if events == 0 {
                sys::uv_poll_stop(handle)
            } else {
                sys::uv_poll_start(handle, events, Some(on_poll))
            }
        };
        check(status)?;
        self.watched = events;
        Ok(())
    }
}

impl Drop for Poll {
    fn drop(&mut self) {
        // SAFETY: the handle is initialised and this is its only close; the owning Loop drops
        // its polls before itself, on its thread; on_close frees the allocation once libuv is
        // done with it.
        unsafe {
            sys::uv_close((*self.inner).handle.as_mut_ptr().cast(), Some(on_close));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::Loop;

    #[test]
    fn watching_leaves_a_blocking_descriptor_blocking() {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let mut l = Loop::new().unwrap();
        l.watch(fds[0], READABLE).unwrap();
        // SAFETY: fds[0] is open; F_GETFL only reads.
        let flags = unsafe { libc::fcntl(fds[0], libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        l.watch(fds[0], 0).unwrap();
        l.run_nowait();
        // SAFETY: both descriptors are open and owned by this test.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
