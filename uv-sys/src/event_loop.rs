//! `Loop`: an owned `uv_loop_t`, polled from outside (its backend fd) and run without blocking.
//!
//! The extension never lets libuv block: it waits on `backend_fd()` itself with the GIL released,
//! then calls `run_nowait()` with the GIL held, so one iteration costs one GIL release.

use std::io;
use std::mem::MaybeUninit;
use std::os::raw::c_void;
use std::ptr;

use libuv_sys2 as sys;

use crate::error::check;

pub struct Loop {
    raw: Box<MaybeUninit<sys::uv_loop_t>>,
}

// SAFETY: libuv loops keep no thread-local state; a `Loop` may move between threads as long as
// one thread at a time uses it, which `&mut self` on every operation guarantees.
unsafe impl Send for Loop {}

impl Loop {
    pub fn new() -> io::Result<Loop> {
        let mut raw = Box::new(MaybeUninit::<sys::uv_loop_t>::uninit());
        // SAFETY: `raw` is a valid, pinned (boxed) allocation of the right size; uv_loop_init
        // initialises it fully before any other use.
        check(unsafe { sys::uv_loop_init(raw.as_mut_ptr()) })?;
        Ok(Loop { raw })
    }

    pub(crate) fn as_ptr(&mut self) -> *mut sys::uv_loop_t {
        self.raw.as_mut_ptr()
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

    /// Runs whatever libuv has ready without blocking; true while handles keep the loop alive.
    pub fn run_nowait(&mut self) -> bool {
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
        let raw = self.as_ptr();
        // SAFETY: the loop is initialised. Owners close their handles before dropping the loop
        // (their close callbacks free their memory during these runs); anything still open is
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

    #[test]
    fn a_new_loop_has_a_backend_fd_and_no_work() {
        let mut l = Loop::new().unwrap();
        assert!(l.backend_fd() >= 0);
        assert!(!l.run_nowait());
    }
}
