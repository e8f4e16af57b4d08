//! Small safe types over libuv's raw API, and the only place in the project that calls it.
//!
//! Each libuv handle kind becomes a Rust type that owns its memory, closes itself and maps
//! libuv's negative error codes to `std::io::Error`. Everything above this crate is safe Rust.

mod error;
mod event_loop;
mod fd_map;
mod poll;
mod sock;
mod wait;
mod waker;

pub use error::{check, uv_error};
pub use event_loop::{Loop, PollEvent};
pub use fd_map::{FdHasher, FdMap};
pub use poll::{READABLE, WRITABLE};
pub use sock::{is_open, recv, send};

pub use wait::hrtime_ns;
pub use waker::Waker;

/// The raw bindings, for the few items (constants) callers need by name.
pub use libuv_sys2 as sys;
