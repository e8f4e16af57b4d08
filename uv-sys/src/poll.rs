//! `Poll`: a `uv_poll_t` watching one descriptor for readability and writability, the base of
//! `add_reader`/`add_writer`.
//!
//! The handle and its callback live in one boxed allocation that libuv points at through
//! `data`; `Poll` owns it until `close`, after which libuv's close callback frees it. Changing
//! the watched events goes through uv_poll_start, which removes and re-adds the descriptor
//! (never an epoll MOD on a descriptor that might have been closed and reused).

use std::io;
use std::mem::MaybeUninit;

use libuv_sys2 as sys;

use crate::error::check;
use crate::event_loop::Loop;

pub const READABLE: i32 = sys::uv_poll_event_UV_READABLE as i32;
pub const WRITABLE: i32 = sys::uv_poll_event_UV_WRITABLE as i32;

/// Called with `Ok(events)` (READABLE | WRITABLE bits) or the polling error.
pub type PollCallback = Box<dyn FnMut(io::Result<i32>) + Send>;

struct Inner {
    handle: MaybeUninit<sys::uv_poll_t>,
    callback: PollCallback,
}

pub struct Poll {
    inner: *mut Inner,
    events: i32,
}

// SAFETY: the boxed handle is only touched through `&mut self` on the loop's thread (the owner
// keeps `Poll` beside the `Loop` under one lock); the callback itself is `Send`.
unsafe impl Send for Poll {}

extern "C" fn on_poll(handle: *mut sys::uv_poll_t, status: i32, events: i32) {
    // SAFETY: `data` points at the live `Inner` this handle belongs to; libuv calls back only
    // between start and close, while `Poll` (or the pending close) keeps it allocated.
    let inner = unsafe { &mut *((*handle).data as *mut Inner) };
    let result = check(status).map(|_| events & (READABLE | WRITABLE));
    (inner.callback)(result);
}

extern "C" fn on_close(handle: *mut sys::uv_handle_t) {
    // SAFETY: `data` holds the pointer `Poll::new` leaked from a Box; libuv calls this once,
    // after which nothing refers to the handle.
    unsafe {
        drop(Box::from_raw((*handle).data as *mut Inner));
    }
}

impl Poll {
    /// Watches `fd` (which libuv switches to non-blocking mode). Fails with the OS error for a
    /// descriptor the backend cannot watch (EBADF, EPERM for regular files, ...).
    pub fn new(event_loop: &mut Loop, fd: i32, callback: PollCallback) -> io::Result<Poll> {
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
            callback,
        }));
        // SAFETY: `inner` is a fresh, never-moving allocation; the handle is initialised by
        // uv_poll_init before any other use, and `data` is set right after.
        let status = unsafe {
            let handle = (*inner).handle.as_mut_ptr();
            let status = sys::uv_poll_init(event_loop.as_ptr(), handle, fd);
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
        Ok(Poll { inner, events: 0 })
    }

    /// The events currently watched.
    pub fn events(&self) -> i32 {
        self.events
    }

    /// Watches exactly `events` (0 stops watching).
    pub fn set_events(&mut self, events: i32) -> io::Result<()> {
        // SAFETY: the handle is initialised and not closed (`close` consumes `self`).
        let status = unsafe {
            let handle = (*self.inner).handle.as_mut_ptr();
            if events == 0 {
                sys::uv_poll_stop(handle)
            } else {
                sys::uv_poll_start(handle, events, Some(on_poll))
            }
        };
        check(status)?;
        self.events = events;
        Ok(())
    }

    /// Stops watching and hands the memory to libuv's close callback.
    pub fn close(self) {
        // Dropping does the closing.
    }
}

impl Drop for Poll {
    fn drop(&mut self) {
        // SAFETY: the handle is initialised and this is its only close; on_close frees the
        // allocation once libuv is done with it.
        unsafe {
            sys::uv_close((*self.inner).handle.as_mut_ptr().cast(), Some(on_close));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::{wait_readable, Readiness};
    use std::sync::{Arc, Mutex};

    #[test]
    fn reports_readable_once_data_arrives_and_closes_cleanly() {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let mut l = Loop::new().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut p = Poll::new(
            &mut l,
            fds[0],
            Box::new(move |r| sink.lock().unwrap().push(r.unwrap())),
        )
        .unwrap();
        p.set_events(READABLE).unwrap();
        l.run_nowait();
        assert!(seen.lock().unwrap().is_empty());
        // SAFETY: fds[1] is the pipe's open write end; the buffer is one valid byte.
        assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
        assert_eq!(
            wait_readable(&[l.backend_fd()], 1000).unwrap(),
            Readiness::Ready(1)
        );
        l.run_nowait();
        assert_eq!(*seen.lock().unwrap(), vec![READABLE]);
        p.close();
        l.run_nowait();
        // SAFETY: both descriptors are open and owned by this test.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    #[test]
    fn watching_leaves_a_blocking_descriptor_blocking() {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let mut l = Loop::new().unwrap();
        let p = Poll::new(&mut l, fds[0], Box::new(|_| ())).unwrap();
        // SAFETY: fds[0] is open; F_GETFL only reads.
        let flags = unsafe { libc::fcntl(fds[0], libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        p.close();
        l.run_nowait();
        // SAFETY: both descriptors are open and owned by this test.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    #[test]
    fn a_bad_descriptor_is_an_error_not_a_crash() {
        let mut l = Loop::new().unwrap();
        let err = Poll::new(&mut l, 987_654, Box::new(|_| ())).err().unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }
}
