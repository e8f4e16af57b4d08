//! `Waker`: a `uv_async_t` that any thread may use to wake the loop out of its wait.
//!
//! The handle lives in an `Arc` shared by every clone and by libuv (through `data`); closing
//! marks it closed under a lock, so a late `wake()` from another thread never touches a handle
//! libuv has let go of, and the memory is freed after libuv's close callback has run.

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::sync::{Arc, RwLock};

use libuv_sys2 as sys;

use crate::error::check;
use crate::event_loop::Loop;

struct Shared {
    handle: UnsafeCell<MaybeUninit<sys::uv_async_t>>,
    open: RwLock<bool>,
}

// SAFETY: the handle is only touched by uv_async_send (thread-safe by libuv's contract) under
// the read lock while open, and by the loop's thread for init/close under the write lock.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

#[derive(Clone)]
pub struct Waker {
    shared: Arc<Shared>,
}

extern "C" fn on_wake(_handle: *mut sys::uv_async_t) {
    // Nothing to do: the loop checks its thread-safe queue on every iteration; the wake-up
    // only ends its wait.
}

extern "C" fn on_close(handle: *mut sys::uv_handle_t) {
    // SAFETY: `data` holds the reference `Waker::new` leaked for libuv; libuv calls this once.
    unsafe {
        let data = (*handle).data as *const Shared;
        drop(Arc::from_raw(data));
    }
}

impl Waker {
    pub fn new(event_loop: &mut Loop) -> io::Result<Waker> {
        let shared = Arc::new(Shared {
            handle: UnsafeCell::new(MaybeUninit::uninit()),
            open: RwLock::new(false),
        });
        let handle = shared.handle.get().cast::<sys::uv_async_t>();
        // SAFETY: the handle memory is inside the Arc's allocation, which never moves and stays
        // alive until on_close drops libuv's reference.
        check(unsafe { sys::uv_async_init(event_loop.as_ptr(), handle, Some(on_wake)) })?;
        // The handle stays referenced: an unreferenced one would leave libuv's loop "not
        // alive", and uv_run would then never register the wake-up descriptor with the backend.
        // SAFETY: the handle was just initialised; `data` takes one strong reference for libuv.
        unsafe {
            (*handle).data = Arc::into_raw(shared.clone()) as *mut _;
        }
        *shared.open.write().unwrap_or_else(|e| e.into_inner()) = true;
        Ok(Waker { shared })
    }

    /// Wakes the loop from any thread; a no-op once closed.
    pub fn wake(&self) {
        let open = self.shared.open.read().unwrap_or_else(|e| e.into_inner());
        if *open {
            // SAFETY: the handle is initialised and not closed (we hold the read lock).
            unsafe {
                sys::uv_async_send(self.shared.handle.get().cast());
            }
        }
    }

    /// Closes the handle; call on the loop's thread before the loop is dropped.
    pub fn close(&self) {
        let mut open = self.shared.open.write().unwrap_or_else(|e| e.into_inner());
        if *open {
            *open = false;
            // SAFETY: the handle is open and this is the loop's thread (the owner's contract);
            // on_close releases libuv's reference after libuv is done with the memory.
            unsafe {
                sys::uv_close(self.shared.handle.get().cast(), Some(on_close));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::{wait_readable, Readiness};

    #[test]
    fn a_wake_from_another_thread_makes_the_backend_readable() {
        let mut l = Loop::new().unwrap();
        let w = Waker::new(&mut l).unwrap();
        l.run_nowait();
        assert_eq!(
            wait_readable(&[l.backend_fd()], 0).unwrap(),
            Readiness::TimedOut
        );
        let w2 = w.clone();
        std::thread::spawn(move || w2.wake()).join().unwrap();
        assert_eq!(
            wait_readable(&[l.backend_fd()], 1000).unwrap(),
            Readiness::Ready(1)
        );
        l.run_nowait();
        w.close();
        w.wake(); // closed: ignored
        l.run_nowait();
    }
}
