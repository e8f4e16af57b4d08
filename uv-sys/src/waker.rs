//! `Waker`: a `uv_async_t` that any thread may use to wake the loop out of its wait. The
//! `Loop` creates and closes it; clones handed out may outlive the loop and then do nothing.
//!
//! The handle lives in an `Arc` shared by every clone and by libuv (through `data`); closing
//! marks it closed under a lock, so a late `wake()` from another thread never touches a handle
//! libuv has let go of, and the memory is freed after libuv's close callback has run.
//!
//! A wake-up already on its way makes `wake()` a single load, without the lock: a burst of
//! `call_soon_threadsafe` calls pays for the lock and libuv's atomics once, not per call.

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use libuv_sys2 as sys;

use crate::error::check;

struct Shared {
    handle: UnsafeCell<MaybeUninit<sys::uv_async_t>>,
    open: RwLock<bool>,
    /// Set by `wake()` when it sends, cleared when libuv delivers the wake-up: while set, the
    /// loop is bound to wake, so another `wake()` has nothing to add (libuv's own `pending`
    /// flag, readable without touching the handle).
    pending: AtomicBool,
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

extern "C" fn on_wake(handle: *mut sys::uv_async_t) {
    // The wake-up only ends the loop's wait; from now on a `wake()` must send again. libuv has
    // already reset its own flag, so no wake-up is lost between the two.
    // SAFETY: `data` holds the reference `Waker::new` leaked for libuv, released only in
    // on_close, which libuv runs after its last callback on this handle.
    let shared = unsafe { &*((*handle).data as *const Shared) };
    shared.pending.store(false, Ordering::SeqCst);
}

extern "C" fn on_close(handle: *mut sys::uv_handle_t) {
    // SAFETY: `data` holds the reference `Waker::new` leaked for libuv; libuv calls this once.
    unsafe {
        let data = (*handle).data as *const Shared;
        drop(Arc::from_raw(data));
    }
}

impl Waker {
    /// Creates the async handle on the loop at `event_loop` (called by `Loop::new`).
    pub(crate) fn new(event_loop: *mut sys::uv_loop_t) -> io::Result<Waker> {
        let shared = Arc::new(Shared {
            handle: UnsafeCell::new(MaybeUninit::uninit()),
            open: RwLock::new(false),
            pending: AtomicBool::new(false),
        });
        let handle = shared.handle.get().cast::<sys::uv_async_t>();
        // SAFETY: the handle memory is inside the Arc's allocation, which never moves and stays
        // alive until on_close drops libuv's reference; the loop is live (the caller's).
        check(unsafe { sys::uv_async_init(event_loop, handle, Some(on_wake)) })?;
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
        // The cheap read libuv's uv_async_send starts with, made before the lock.
        if self.shared.pending.load(Ordering::Relaxed) {
            return;
        }
        let open = self.shared.open.read().unwrap_or_else(|e| e.into_inner());
        if *open && !self.shared.pending.swap(true, Ordering::SeqCst) {
            // SAFETY: the handle is initialised and not closed (we hold the read lock).
            unsafe {
                sys::uv_async_send(self.shared.handle.get().cast());
            }
        }
    }

    /// Closes the handle (by the owning `Loop`, on its thread, before it is torn down).
    pub(crate) fn close(&self) {
        let mut open = self.shared.open.write().unwrap_or_else(|e| e.into_inner());
        if *open {
            *open = false;
            // SAFETY: the handle is open and the owning loop calls this on its thread while
            // alive; on_close releases libuv's reference after libuv is done with the memory.
            unsafe {
                sys::uv_close(self.shared.handle.get().cast(), Some(on_close));
            }
        }
    }
}
