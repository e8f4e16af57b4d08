//! `Loop`: an owned `uv_loop_t` together with every handle the extension puts on it (the
//! waker and one poll handle per watched descriptor), so that no handle can outlive the loop
//! or be closed off its thread, and the loop closes them all, in order, when dropped.
//!
//! An iteration that may wait runs `run_once(timeout)` (the caller releases the GIL around it):
//! libuv's own epoll_wait is the wait, bounded by a timer, so a blocking iteration costs one
//! poll system call. One that must not wait runs `run_nowait()`. A descriptor that signals
//! arrive on (Python's wake-up fd) is watched apart, so a signal ends the wait.

use std::io;
use std::mem::MaybeUninit;
use std::os::raw::c_void;
use std::ptr;
use std::sync::{Arc, Mutex};

use libuv_sys2 as sys;

use crate::error::check;
use crate::fd_map::FdMap;
use crate::poll::{Poll, PollEvents};
use crate::waker::Waker;

/// What a poll handle reported: its descriptor, and the events (READABLE | WRITABLE) or the error.
pub type PollEvent = (i32, io::Result<i32>);

pub struct Loop {
    raw: Box<MaybeUninit<sys::uv_loop_t>>,
    waker: Option<Waker>,
    polls: FdMap<Poll>,
    /// Descriptors whose registration libuv will only make at its next run.
    unregistered: Vec<i32>,
    events: PollEvents,
    /// Bounds `run_once`'s wait.
    deadline: Box<MaybeUninit<sys::uv_timer_t>>,
    /// The signal wake-up descriptor, its poll handle and where that handle reports.
    signal: Option<(i32, Poll, PollEvents)>,
}

extern "C" fn on_deadline(_handle: *mut sys::uv_timer_t) {
    // Nothing to do: the timer only ends run_once's wait.
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
            polls: FdMap::default(),
            unregistered: Vec::new(),
            events: Arc::new(Mutex::new(Vec::new())),
            deadline: Box::new(MaybeUninit::uninit()),
            signal: None,
        };
        let raw = event_loop.as_ptr();
        // SAFETY: the timer lives in its own box, which stays put until the loop is dropped
        // (after the timer is closed and its close processed); the loop is initialised.
        // Unreferenced: the timer never keeps the loop alive by itself.
        unsafe {
            let timer = event_loop.deadline.as_mut_ptr();
            check(sys::uv_timer_init(raw, timer))?;
            sys::uv_unref(timer.cast());
        }
        event_loop.waker = Some(Waker::new(raw)?);
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

    /// The epoll/kqueue descriptor that becomes readable when libuv has events to process
    /// (the tests wait on it; the loop itself waits inside `run_once`).
    #[cfg(test)]
    pub fn backend_fd(&self) -> i32 {
        // SAFETY: the loop was initialised in `new` and lives until `drop`.
        unsafe { sys::uv_backend_fd(self.raw.as_ptr()) }
    }

    /// Watches `fd` for exactly `events` (READABLE | WRITABLE); 0 stops watching it and closes
    /// its poll handle. Fails with the OS error for a descriptor the backend cannot watch.
    pub fn watch(&mut self, fd: i32, events: i32) -> io::Result<()> {
        if events == 0 {
            // Dropping the poll closes it; libuv's close callback frees it.
            self.polls.remove(&fd);
            return Ok(());
        }
        if !self.polls.contains_key(&fd) {
            // Poll::new reads the descriptor's flags first: a closed one fails there (EBADF).
            let events_sink = self.events.clone();
            let poll = Poll::new(self.as_ptr(), fd, events_sink)?;
            self.polls.insert(fd, poll);
        } else if !crate::sock::is_open(fd) {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
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
    #[cfg(test)]
    pub fn take_events(&mut self) -> Vec<PollEvent> {
        let mut events = Vec::new();
        self.drain_events(&mut events);
        events
    }

    /// Moves what the poll handles reported since the last call to the end of `into` (whose
    /// allocation the caller reuses: no allocation per iteration).
    pub fn drain_events(&mut self, into: &mut Vec<PollEvent>) {
        into.append(&mut self.events.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Watches `fd` (-1: none) as the descriptor signals arrive on; `run_once` returns when it
    /// becomes readable, and `take_signal` says so.
    pub fn set_signal_fd(&mut self, fd: i32) -> io::Result<()> {
        if self.signal.as_ref().map_or(-1, |(watched, _, _)| *watched) == fd {
            return Ok(());
        }
        // Dropping the old poll closes it.
        self.signal = None;
        if fd < 0 {
            return Ok(());
        }
        if !crate::sock::is_open(fd) {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let reports: PollEvents = Arc::new(Mutex::new(Vec::new()));
        let mut poll = Poll::new(self.as_ptr(), fd, reports.clone())?;
        poll.set_events(crate::poll::READABLE)?;
        self.signal = Some((fd, poll, reports));
        Ok(())
    }

    /// Whether the signal descriptor became readable since the last call.
    pub fn take_signal(&mut self) -> bool {
        match &self.signal {
            Some((_, _, reports)) => {
                let mut reports = reports.lock().unwrap_or_else(|e| e.into_inner());
                let any = !reports.is_empty();
                reports.clear();
                any
            }
            None => false,
        }
    }

    /// Runs one libuv iteration that waits up to `timeout_ms` (-1: until something happens)
    /// for I/O, a wake-up or a signal. Touches no Python object: the caller may (and should)
    /// release the GIL around it.
    pub fn run_once(&mut self, timeout_ms: i32) -> bool {
        if self.take_unregistered_closed() {
            // A closed descriptor was reported: nothing to wait for.
            return self.run(sys::uv_run_mode_UV_RUN_NOWAIT);
        }
        let timer = self.deadline.as_mut_ptr();
        if timeout_ms >= 0 {
            // SAFETY: the loop and its timer are initialised (`new`) and not closed (`drop`).
            // The loop's cached time is refreshed first so the wait is `timeout_ms` from now.
            unsafe {
                sys::uv_update_time(self.as_ptr());
                sys::uv_timer_start(timer, Some(on_deadline), timeout_ms as u64, 0);
            }
        }
        let alive = self.run(sys::uv_run_mode_UV_RUN_ONCE);
        // SAFETY: as above; stopping a timer that is not running is a no-op.
        unsafe {
            sys::uv_timer_stop(timer);
        }
        alive
    }

    /// Runs whatever libuv has ready without blocking; true while handles keep the loop alive.
    pub fn run_nowait(&mut self) -> bool {
        self.take_unregistered_closed();
        self.run(sys::uv_run_mode_UV_RUN_NOWAIT)
    }

    fn run(&mut self, mode: sys::uv_run_mode) -> bool {
        // SAFETY: the loop is initialised and `&mut self` rules out reentrant use from Rust.
        unsafe { sys::uv_run(self.as_ptr(), mode) != 0 }
    }

    /// libuv adds new registrations to epoll during the run and aborts the process if the
    /// descriptor is gone by then; one closed since it was watched is taken out first and
    /// reported as an EBADF event, the way a selector reports it. True if one was.
    fn take_unregistered_closed(&mut self) -> bool {
        if self.unregistered.is_empty() {
            return false;
        }
        let mut reported = false;
        for fd in std::mem::take(&mut self.unregistered) {
            if self.polls.contains_key(&fd) && !crate::sock::is_open(fd) {
                if let Some(poll) = self.polls.get_mut(&fd) {
                    let _ = poll.set_events(0);
                }
                self.events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((fd, Err(io::Error::from_raw_os_error(libc::EBADF))));
                reported = true;
            }
        }
        reported
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
        self.signal = None;
        if let Some(waker) = self.waker.take() {
            waker.close();
        }
        let raw = self.as_ptr();
        // SAFETY: the timer is initialised and closed only here; its memory (our box) outlives
        // the runs below, which process the close.
        unsafe {
            sys::uv_close(self.deadline.as_mut_ptr().cast(), None);
        }
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

    fn write_byte(fd: i32) {
        // SAFETY: `fd` is an open write end the test owns; the buffer is one valid byte.
        assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
    }

    #[test]
    fn run_once_waits_no_longer_than_its_timeout() {
        let mut l = Loop::new().unwrap();
        l.run_nowait();
        let started = std::time::Instant::now();
        l.run_once(30);
        let waited = started.elapsed();
        assert!(waited >= std::time::Duration::from_millis(25), "{waited:?}");
        assert!(l.take_events().is_empty());
    }

    #[test]
    fn run_once_returns_for_a_wake_and_for_io() {
        let mut l = Loop::new().unwrap();
        l.run_nowait();
        let w = l.waker();
        let waking = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            w.wake();
        });
        l.run_once(-1);
        waking.join().unwrap();
        let fds = pipe();
        l.watch(fds[0], READABLE).unwrap();
        write_byte(fds[1]);
        l.run_once(-1);
        assert_eq!(l.take_events().len(), 1);
        l.watch(fds[0], 0).unwrap();
        close(fds[0]);
        close(fds[1]);
    }

    #[test]
    fn run_once_returns_when_the_signal_descriptor_is_readable() {
        let fds = pipe();
        let mut l = Loop::new().unwrap();
        l.set_signal_fd(fds[0]).unwrap();
        l.run_nowait();
        assert!(!l.take_signal());
        write_byte(fds[1]);
        l.run_once(-1);
        assert!(l.take_signal());
        assert!(
            l.take_events().is_empty(),
            "not reported as a watched descriptor"
        );
        l.set_signal_fd(-1).unwrap();
        assert!(!l.take_signal());
        drop(l);
        close(fds[0]);
        close(fds[1]);
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
        // A number far above the ones other tests, running on other threads, are given: a
        // closed low number could be reused by one of them before this run, and be valid.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        let floor = (limit.rlim_cur.min(1024) - 8) as i32;
        // SAFETY: fds[1] is an open descriptor; F_DUPFD returns a new one, or -1.
        let high = unsafe { libc::fcntl(fds[1], libc::F_DUPFD_CLOEXEC, floor) };
        assert!(high >= floor);
        let mut l = Loop::new().unwrap();
        l.watch(high, WRITABLE).unwrap();
        close(high);
        l.run_nowait();
        let events = l.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].1.as_ref().unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        close(fds[0]);
        close(fds[1]);
    }

    #[test]
    fn a_bad_descriptor_is_an_error() {
        let mut l = Loop::new().unwrap();
        let err = l.watch(987_654, READABLE).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }
}
