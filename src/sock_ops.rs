//! `sock_recv` (and `sock_sendall`'s first send) done natively for plain `socket.socket`
//! objects. The read is tried at once, and
//! when the socket has nothing yet, a `SockRecv` becomes the descriptor's reader (the fd
//! watcher's callback, run without Python's call protocol) and completes the future itself, as
//! uvloop's compiled `sock_recv` does. asyncio's Python version (`Loop.sock_recv` falls back to
//! it for other sockets and arguments) runs two coroutines, a done callback and a second
//! dispatch per wait.
//!
//! While it waits, the operation holds the socket (socket.socket's io-reference count, as
//! `Loop._holding` does), so a `close()` meanwhile only marks it closed and the descriptor is
//! never closed under the watcher. The hold is released exactly once: when the operation
//! completes, or when its reader handle is cancelled (removed, replaced, or the loop closed),
//! through `release_if_op`, called by the handle as it drops its callable.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyTuple};
use pyo3::PyTypeInfo;
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::event_loop::{os_error, Loop};
use crate::io_watchers::READABLE;
use crate::transport::{read_into_bytes, would_block, MAX_READ};

/// `SockRecv`'s type object, for the dispatch's one-compare check.
static OP_TYPE: AtomicUsize = AtomicUsize::new(0);

/// Called once the class is registered.
pub fn remember_type(py: Python<'_>) {
    OP_TYPE.store(SockRecv::type_object(py).as_ptr() as usize, Relaxed);
}

#[inline]
fn as_op<'a, 'py>(obj: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, SockRecv>> {
    if obj.get_type_ptr() as usize != OP_TYPE.load(Relaxed) {
        return None;
    }
    // SAFETY: the object's type is exactly SockRecv's (compared just above; the class cannot
    // be subclassed), so it is laid out as one.
    Some(unsafe { obj.downcast_unchecked::<SockRecv>() })
}

/// Runs a waiting `sock_recv` when `callback` is one (an fd watcher's reader, called with no
/// arguments); None for anything else.
#[inline]
pub fn try_ready(callback: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> Option<PyResult<()>> {
    let op = as_op(callback)?;
    if !args.is_empty() {
        return None;
    }
    Some(SockRecv::ready(op))
}

/// Releases the socket a waiting `sock_recv` holds, if `callback` is one: called when a handle
/// drops its callable, so a reader removed, replaced or closed with its loop lets go of it.
#[inline]
pub fn release_if_op(py: Python<'_>, callback: &Py<PyAny>) {
    if let Some(op) = as_op(callback.bind(py)) {
        op.get().release(py);
    }
}

/// One `sock_recv` waiting for its socket to become readable.
#[pyclass(module = "monitored_ioloop._native", frozen)]
pub struct SockRecv {
    event_loop: Py<Loop>,
    sock: Py<PyAny>,
    future: Py<PyAny>,
    fd: i32,
    size: usize,
    /// The socket's io-reference is still held.
    held: AtomicBool,
}

impl SockRecv {
    /// Lets go of the socket (once): one io-reference less, and the close a `sock.close()`
    /// made meanwhile happens now (socket.socket's `_decref_socketios`).
    fn release(&self, py: Python<'_>) {
        if !self.held.swap(false, Relaxed) {
            return;
        }
        let sock = self.sock.bind(py);
        let released = (|| -> PyResult<()> {
            let refs: isize = sock.getattr(intern!(py, "_io_refs"))?.extract()?;
            if refs > 0 {
                sock.setattr(intern!(py, "_io_refs"), refs - 1)?;
            }
            if sock.getattr(intern!(py, "_closed"))?.is_truthy()? {
                sock.call_method0(intern!(py, "close"))?;
            }
            Ok(())
        })();
        if let Err(err) = released {
            err.write_unraisable(py, Some(sock));
        }
    }

    /// The socket is readable: one read completes the future; a spurious wake-up (nothing to
    /// read after all) keeps waiting. The reader goes before the future completes, so the
    /// socket is released first, as asyncio's done callback does.
    fn ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let future = this.future.bind(py);
        if future.call_method0(intern!(py, "done"))?.is_truthy()? {
            // Cancelled while waiting (the awaiting coroutine removes the reader too).
            Loop::remove_watcher(this.event_loop.bind(py), this.fd, READABLE)?;
            return Ok(());
        }
        let read = read_into_bytes(py, this.fd, this.size);
        if matches!(&read, Err(err) if would_block(err)) {
            return Ok(());
        }
        Loop::remove_watcher(this.event_loop.bind(py), this.fd, READABLE)?;
        match read {
            Ok(data) => future.call_method1(intern!(py, "set_result"), (data,))?,
            Err(err) => {
                future.call_method1(intern!(py, "set_exception"), (os_error(err).value(py),))?
            }
        };
        Ok(())
    }
}

#[pymethods]
impl SockRecv {
    fn __call__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::ready(slf)
    }

    /// How reprs and monitor reports name the reader.
    #[getter]
    fn __qualname__(&self) -> &'static str {
        "Loop.sock_recv"
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        visit.call(&self.sock)?;
        visit.call(&self.future)
    }
}

/// Whether `fd` belongs to one of the loop's transports (`loop._transports`, a
/// `TransportMap`: its strongly held native transports, then asyncio's weak mapping's data).
fn has_transport(event_loop: &Bound<'_, Loop>, fd: i32) -> PyResult<bool> {
    let py = event_loop.py();
    let transports = event_loop.getattr(intern!(py, "_transports"))?;
    for name in [intern!(py, "_native"), intern!(py, "data")] {
        let Ok(map) = transports.getattr(name) else {
            // Not a TransportMap: let asyncio's path check it.
            return Ok(true);
        };
        match map.downcast::<PyDict>() {
            Ok(map) if !map.contains(fd)? => {}
            _ => return Ok(true),
        }
    }
    Ok(false)
}

/// `loop.sock_recv(sock, n)` for a non-blocking `socket.socket` whose descriptor no transport
/// uses: the data if the socket has some (or the error), else a future the socket's reader
/// completes. None: asyncio's Python path must handle it (a closed socket, a size that is not
/// a small int, a descriptor owned by a transport), with its checks and errors.
pub fn sock_recv(
    event_loop: &Bound<'_, Loop>,
    sock: &Bound<'_, PyAny>,
    size: &Bound<'_, PyAny>,
) -> PyResult<Option<Py<PyAny>>> {
    let py = event_loop.py();
    let size = match size.downcast_exact::<PyInt>().map(|n| n.extract::<usize>()) {
        Ok(Ok(n)) if n <= MAX_READ => n,
        _ => return Ok(None),
    };
    check_nonblocking(sock)?;
    let fd: i32 = sock.call_method0(intern!(py, "fileno"))?.extract()?;
    if fd < 0 {
        return Ok(None);
    }
    match read_into_bytes(py, fd, size) {
        Ok(data) => return Ok(Some(data.into_any().unbind())),
        Err(err) if !would_block(&err) => return Err(os_error(err)),
        Err(_) => {}
    }
    if has_transport(event_loop, fd)? {
        return Ok(None);
    }
    let future = Loop::create_future(event_loop)?;
    let refs: isize = sock.getattr(intern!(py, "_io_refs"))?.extract()?;
    sock.setattr(intern!(py, "_io_refs"), refs + 1)?;
    let op = Bound::new(
        py,
        SockRecv {
            event_loop: event_loop.clone().unbind(),
            sock: sock.clone().unbind(),
            future: future.clone_ref(py),
            fd,
            size,
            held: AtomicBool::new(true),
        },
    )?;
    if let Err(err) = Loop::watch_fd(
        event_loop,
        fd,
        op.clone().into_any(),
        PyTuple::empty(py),
        READABLE,
        None,
    ) {
        op.get().release(py);
        return Err(err);
    }
    Ok(Some(future))
}

/// `loop.sock_sendall(sock, data)`'s first send, for a non-blocking `socket.socket` and
/// `bytes`: None when the socket took all of it, else how much it took (0 when it would
/// block), the rest being asyncio's to send; -1 for anything else (asyncio's path then).
pub fn sock_send(sock: &Bound<'_, PyAny>, data: &Bound<'_, PyAny>) -> PyResult<Option<isize>> {
    let py = sock.py();
    let Ok(data) = data.downcast_exact::<PyBytes>() else {
        return Ok(Some(-1));
    };
    check_nonblocking(sock)?;
    let fd: i32 = sock.call_method0(intern!(py, "fileno"))?.extract()?;
    if fd < 0 {
        return Ok(Some(-1));
    }
    let data = data.as_bytes();
    match uv_sys::send(fd, data) {
        Ok(n) if n == data.len() => Ok(None),
        Ok(n) => Ok(Some(n as isize)),
        Err(err) if would_block(&err) => Ok(Some(0)),
        Err(err) => Err(os_error(err)),
    }
}

/// asyncio's refusal of blocking sockets (uvloop makes it in every mode, as the loop does).
fn check_nonblocking(sock: &Bound<'_, PyAny>) -> PyResult<()> {
    let timeout = sock.call_method0(intern!(sock.py(), "gettimeout"))?;
    if timeout.is_none() || timeout.extract::<f64>()? != 0.0 {
        return Err(PyValueError::new_err("the socket must be non-blocking"));
    }
    Ok(())
}

/// The coroutine awaiting `future` (a native `sock_recv`'s) ended without its result
/// (cancelled, or closed): the reader goes, if it is still that operation's.
pub fn sock_recv_abandoned(
    event_loop: &Bound<'_, Loop>,
    sock: &Bound<'_, PyAny>,
    future: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = event_loop.py();
    let Ok(fd) = sock
        .call_method0(intern!(py, "fileno"))
        .and_then(|f| f.extract::<i32>())
    else {
        return Ok(());
    };
    if fd < 0 {
        return Ok(());
    }
    let reader = Loop::reader_callback(event_loop, fd);
    let ours = reader
        .as_ref()
        .and_then(|cb| as_op(cb.bind(py)).map(|op| op.get().future.is(future)))
        .unwrap_or(false);
    if ours {
        Loop::remove_watcher(event_loop, fd, READABLE)?;
    }
    Ok(())
}
