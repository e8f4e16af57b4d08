//! `Loop`: an owned `uv_loop_t` together with every handle the extension puts on it (the
//! waker and one poll handle per watched descriptor), so that no handle can outlive the loop
//! or be closed off its thread, and the loop closes them all, in order, when dropped.
//!
//! The extension never lets libuv block: it waits on `backend_fd()` itself with the GIL released,
//! then calls `run_nowait()` with the GIL held, so one iteration costs one GIL release.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::os::raw::c_void;
use std::ptr;
use std::sync::{Arc, Mutex};

use libuv_sys2 as sys;

use crate::error::check;
use crate::poll::{Poll, PollEvents};
use crate::waker::Waker;

pub struct Loop {
    raw: Box<MaybeUninit<sys::uv_loop_t>>,
    waker: Option<Waker>,
    polls: HashMap<i32, Poll>,
    /// Descriptors whose registration libuv will only make at its next run.
    unregistered: Vec<i32>,
    events: PollEvents,
}

// SAFETY: libuv loops keep no thread-local state; a `Loop` (with its handles) may move between
// threads as long as one thread at a time uses it, which `&mut self` on every operation
// guarantees.
unsafe impl Send for Loop {}

impl Loop {
    pub fn new() -> io::Result<Loop> {
        let mut raw = Box::new(MaybeUninit::<sys::uv_loop_t>::uninit());
        // SAFETY: `raw` is a valid, pinned (boxed) allocation of the right size; uv_loop_init
        // initialises it fully before any other use.
        check(unsafe { sys::uv_loop_init(raw.as_mut_ptr()) })?;
        let mut event_loop = Loop {
            raw,
            waker: None,
            polls: HashMap::new(),
            unregistered: Vec::new(),
            events: Arc::new(Mutex::new(Vec::new())),
        };
        event_loop.waker = Some(Waker::new(event_loop.as_ptr())?);
        Ok(event_loop)
    }

    pub(crate) fn as_ptr(&mut self) -> *mut sys::uv_loop_t {
        self.raw.as_mut_ptr()
    }

    /// A handle any thread may use to end this loop's wait (a no-op once the loop is gone).
    pub fn waker(&self) -> Waker {
        self.waker
            .clone()
            .expect("the waker lives as long as the loop")
    }

    /// The epoll/kqueue descriptor that becomes readable when libuv has events to process.
    pub fn backend_fd(&self) -> i32 {
        // SAFETY: the loop was initialised in `new` and lives until `drop`.
        unsafe { sys::uv_backend_fd(self.raw.as_ptr()) }
    }

    /// libuv's own poll timeout in milliseconds (-1: none, 0: it has pending work now).
    pub fn backend_timeout(&self) -> i32 {
        // SAFETY: as in `backend_fd`.
        unsafe { sys::uv_backend_timeout(self.raw.as_ptr()) }
    }

    /// Watches `fd` for exactly `events` (READABLE | WRITABLE); 0 stops watching it and closes
    /// its poll handle. Fails with the OS error for a descriptor the backend cannot watch.
    pub fn watch(&mut self, fd: i32, events: i32) -> io::Result<()> {
        if events == 0 {
            // Dropping the poll closes it; libuv's close callback frees it.
            self.polls.remove(&fd);
            return Ok(());
        }
        if !crate::sock::is_open(fd) {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        if !self.polls.contains_key(&fd) {
            let events_sink = self.events.clone();
            let poll = Poll::new(self.as_ptr(), fd, events_sink)?;
            self.polls.insert(fd, poll);
        }
        let poll = self.polls.get_mut(&fd).expect("inserted above");
        if poll.events() != events {
            poll.set_events(events)?;
            self.unregistered.push(fd);
        }
        Ok(())
    }

    /// The events `fd` is watched for (0: not watched).
    pub fn watched(&self, fd: i32) -> i32 {
        self.polls.get(&fd).map_or(0, Poll::events)
    }

    /// Watches `fd` again for what it was watched for: after an error libuv stops the handle.
    pub fn rewatch(&mut self, fd: i32) {
        if let Some(poll) = self.polls.get_mut(&fd) {
            let events = poll.events();
            if events != 0 && crate::sock::is_open(fd) && poll.set_events(events).is_ok() {
                self.unregistered.push(fd);
            }
        }
    }

    /// What the poll handles reported since the last call: `(fd, events or error)`.
    pub fn take_events(&mut self) -> Vec<(i32, io::Result<i32>)> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs whatever libuv has ready without blocking; true while handles keep the loop alive.
    ///
    /// libuv adds new registrations to epoll during the run and aborts the process if the
    /// descriptor is gone by then; one closed since it was watched is taken out first and
    /// reported as an EBADF event, the way a selector reports it.
    pub fn run_nowait(&mut self) -> bool {
        for fd in std::mem::take(&mut self.unregistered) {
            if self.polls.contains_key(&fd) && !crate::sock::is_open(fd) {
                if let Some(poll) = self.polls.get_mut(&fd) {
                    let _ = poll.set_events(0);
                }
                self.events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((fd, Err(io::Error::from_raw_os_error(libc::EBADF))));
            }
        }
        // SAFETY: the loop is initialised and `&mut self` rules out reentrant use from Rust.
        unsafe { sys::uv_run(self.as_ptr(), sys::uv_run_mode_UV_RUN_NOWAIT) != 0 }
    }
}

extern "C" fn close_stray(handle: *mut sys::uv_handle_t, _arg: *mut c_void) {
    // SAFETY: uv_walk hands us live handles of this loop; closing one twice is prevented by
    // the uv_is_closing check.
    unsafe {
        if sys::uv_is_closing(handle) == 0 {
            sys::uv_close(handle, None);
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // Close our handles first: their close callbacks free their memory during the runs
        // below, while the loop is still alive.
        self.polls.clear();
        if let Some(waker) = self.waker.take() {
            waker.close();
        }
        let raw = self.as_ptr();
        // SAFETY: the loop is initialised. Anything still open after our own handles closed is
        // closed without a callback, leaking its memory rather than freeing it while libuv
        // might still touch it.
        unsafe {
            sys::uv_run(raw, sys::uv_run_mode_UV_RUN_NOWAIT);
            if sys::uv_loop_close(raw) != 0 {
                sys::uv_walk(raw, Some(close_stray), ptr::null_mut());
                sys::uv_run(raw, sys::uv_run_mode_UV_RUN_DEFAULT);
                sys::uv_loop_close(raw);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::{READABLE, WRITABLE};
    use crate::wait::{wait_readable, Readiness};

    fn pipe() -> [i32; 2] {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        fds
    }

    fn close(fd: i32) {
        // SAFETY: the test owns `fd`.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn a_new_loop_has_a_backend_fd() {
        let mut l = Loop::new().unwrap();
        assert!(l.backend_fd() >= 0);
        l.run_nowait();
    }

    #[test]
    fn a_wake_from_another_thread_makes_the_backend_readable() {
        let mut l = Loop::new().unwrap();
        l.run_nowait();
        assert_eq!(
            wait_readable(&[l.backend_fd()], 0).unwrap(),
            Readiness::TimedOut
        );
        let w = l.waker();
        std::thread::spawn(move || w.wake()).join().unwrap();
        assert_eq!(
            wait_readable(&[l.backend_fd()], 1000).unwrap(),
            Readiness::Ready(1)
        );
        l.run_nowait();
    }

    #[test]
    fn a_waker_kept_after_the_loop_is_gone_does_nothing() {
        let l = Loop::new().unwrap();
        let w = l.waker();
        drop(l);
        w.wake();
    }

    #[test]
    fn reports_readable_once_data_arrives() {
        let fds = pipe();
        let mut l = Loop::new().unwrap();
        l.watch(fds[0], READABLE).unwrap();
        l.run_nowait();
        assert!(l.take_events().is_empty());
        // SAFETY: fds[1] is the pipe's open write end; the buffer is one valid byte.
        assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
        assert_eq!(
            wait_readable(&[l.backend_fd()], 1000).unwrap(),
            Readiness::Ready(1)
        );
        l.run_nowait();
        let events = l.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].0, *events[0].1.as_ref().unwrap()),
            (fds[0], READABLE)
        );
        l.watch(fds[0], 0).unwrap();
        assert_eq!(l.watched(fds[0]), 0);
        l.run_nowait();
        close(fds[0]);
        close(fds[1]);
    }

    #[test]
    fn a_descriptor_closed_before_the_run_is_reported_not_fatal() {
        let fds = pipe();
        let mut l = Loop::new().unwrap();
        l.watch(fds[1], WRITABLE).unwrap();
        close(fds[1]);
        l.run_nowait();
        let events = l.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].1.as_ref().unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        close(fds[0]);
    }

    #[test]
    fn a_bad_descriptor_is_an_error() {
        let mut l = Loop::new().unwrap();
        let err = l.watch(987_654, READABLE).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }
}
