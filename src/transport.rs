//! `StreamCore`: the native core of TCP and Unix stream transports. Reading (one loop-wide
//! buffer, no allocation per read but the `bytes` handed to the protocol), writing (straight to
//! the socket, buffering only what the kernel did not take) and the flags they depend on live
//! here. The transport itself is Python (`monitored_ioloop.transports.SocketTransport`, an
//! `asyncio.Transport` as asyncio's checks want), binds these methods as its own and adds
//! asyncio's cold paths: construction, close/abort, error reporting, flow-control calls, extra
//! info, BufferedProtocol reads.
//!
//! Readiness comes from the loop's fd watchers: `_read_ready`/`_write_ready` are their
//! callbacks, so every read and write is one timed, monitored dispatch.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};

use crate::context::is_fatal;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyByteArray, PyBytes, PyTuple, PyType};
use pyo3::PyTypeInfo;
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::event_loop::{os_error, Loop};
use crate::io_watchers::{READABLE, WRITABLE};

/// As asyncio's transports: the most one read takes.
pub(crate) const MAX_READ: usize = 256 * 1024;
/// Writes after the connection was lost are counted; from this many on they are logged.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

thread_local! {
    /// One read buffer per thread (a loop runs on one thread): reads land here, then one copy
    /// makes the `bytes` object.
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_READ]);
}

static BUFFERED_PROTOCOL: GILOnceCell<Py<PyType>> = GILOnceCell::new();

/// `StreamCore`'s type object, for the dispatch's one-compare check (PyO3's own lookup of it
/// costs tens of instructions).
static CORE_TYPE: AtomicUsize = AtomicUsize::new(0);

/// Called once the class is registered.
pub fn remember_type(py: Python<'_>) {
    CORE_TYPE.store(StreamCore::type_object(py).as_ptr() as usize, Relaxed);
}

/// Runs a stream transport's read when `callback` is its core (an fd watcher's reader, called
/// with no arguments) without going through Python's call protocol; None for anything else.
#[inline]
pub fn try_read_ready(
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> Option<PyResult<()>> {
    if callback.get_type_ptr() as usize != CORE_TYPE.load(Relaxed) || !args.is_empty() {
        return None;
    }
    // SAFETY: the object's type is exactly StreamCore's (compared just above, and the class
    // cannot be subclassed), so it is laid out as one.
    let core = unsafe { callback.downcast_unchecked::<StreamCore>() };
    Some(StreamCore::read_ready(core))
}

struct State {
    protocol: Option<Py<PyAny>>,
    /// The protocol's `data_received`, looked up once when the protocol is set (as uvloop
    /// does); None for a buffered protocol, or one without it (looked up per read then, so
    /// that the read raises asyncio's AttributeError).
    data_received: Option<Py<PyAny>>,
    /// The type of the last protocol set, kept after teardown so that monitor reports read
    /// later can still name the protocol a read went to.
    protocol_type: Option<Py<PyType>>,
    buffered: bool,
    protocol_connected: bool,
    closing: bool,
    eof: bool,
    conn_lost: u32,
    paused: bool,
    protocol_paused: bool,
    high_water: usize,
    low_water: usize,
    /// Bytes the kernel has not taken yet: `buffer[sent..]`.
    buffer: Vec<u8>,
    sent: usize,
    empty_waiter: Option<Py<PyAny>>,
}

/// What a read hands its data to.
enum Receiver {
    /// The protocol's `data_received`, looked up when the protocol was set.
    Method(Py<PyAny>),
    /// The protocol, whose `data_received` is looked up now.
    Protocol(Py<PyAny>),
}

impl Receiver {
    fn call<'py>(self, py: Python<'py>, data: Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Receiver::Method(method) => method.into_bound(py).call1((data,)),
            Receiver::Protocol(protocol) => protocol
                .into_bound(py)
                .call_method1(intern!(py, "data_received"), (data,)),
        }
    }
}

impl State {
    fn pending(&self) -> usize {
        self.buffer.len() - self.sent
    }
}

#[pyclass(module = "monitored_ioloop._native", frozen, weakref)]
pub struct StreamCore {
    event_loop: Py<Loop>,
    /// The Python transport this is the core of (its cold paths are called on it).
    transport: Py<PyAny>,
    fd: i32,
    /// The `contextvars.Context` the protocol's callbacks run in (uvloop's rule: the one
    /// current when the connection was made, copied), so the fd watchers' handles run in it.
    context: Py<PyAny>,
    state: Mutex<State>,
    /// Counted in the loop's open transports until detached (or dropped).
    counted: AtomicBool,
}

impl Drop for StreamCore {
    fn drop(&mut self) {
        self.uncount();
    }
}

// Once the socket is closed the descriptor number may belong to another socket: `_detach`
// marks the connection lost, and every path that touches `fd` checks `conn_lost` first (under
// the same lock), so nothing is ever read from or written to a recycled descriptor.

pub(crate) fn would_block(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// One `recv` of at most `size` (<= MAX_READ) bytes from `fd`, as a `bytes` object.
pub(crate) fn read_into_bytes(
    py: Python<'_>,
    fd: i32,
    size: usize,
) -> io::Result<Bound<'_, PyBytes>> {
    READ_BUFFER.with(|buf| {
        let mut buf = buf.borrow_mut();
        uv_sys::recv(fd, &mut buf[..size]).map(|n| PyBytes::new(py, &buf[..n]))
    })
}

impl StreamCore {
    fn uncount(&self) {
        if self.counted.swap(false, Relaxed) {
            self.event_loop.get().transport_closed();
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// asyncio's `_fatal_error(exc, message)`, on the Python side.
    fn fatal(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if is_fatal(py, &err) {
            return Err(err);
        }
        slf.get()
            .transport
            .bind(py)
            .call_method1(intern!(py, "_fatal_error"), (err.value(py), message))?;
        Ok(())
    }

    fn start_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let callback = slf.getattr(intern!(py, "_write_ready"))?;
        Loop::watch_fd(
            this.event_loop.bind(py),
            this.fd,
            callback,
            PyTuple::empty(py),
            WRITABLE,
            Some(this.context.bind(py)),
        )?;
        Ok(())
    }

    /// One read, handed to the protocol's `data_received`.
    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let receiver = {
            let state = this.state();
            if state.conn_lost > 0 {
                return Ok(());
            }
            if state.buffered {
                None
            } else if let Some(method) = &state.data_received {
                Some(Receiver::Method(method.clone_ref(py)))
            } else {
                state
                    .protocol
                    .as_ref()
                    .map(|p| Receiver::Protocol(p.clone_ref(py)))
            }
        };
        let Some(receiver) = receiver else {
            this.transport
                .bind(py)
                .call_method0(intern!(py, "_read_ready__get_buffer"))?;
            return Ok(());
        };
        let read = read_into_bytes(py, this.fd, MAX_READ);
        match read {
            Err(err) if would_block(&err) => Ok(()),
            Err(err) => Self::fatal(slf, os_error(err), "Fatal read error on socket transport"),
            Ok(data) if data.as_bytes().is_empty() => {
                this.transport
                    .bind(py)
                    .call_method0(intern!(py, "_read_ready__on_eof"))?;
                Ok(())
            }
            Ok(data) => match receiver.call(py, data) {
                Ok(_) => Ok(()),
                Err(err) => Self::fatal(
                    slf,
                    err,
                    "Fatal error: protocol.data_received() call failed.",
                ),
            },
        }
    }

    fn start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // The reader's callback is the core itself (`__call__`): no bound method per connection.
        Loop::watch_fd(
            this.event_loop.bind(py),
            this.fd,
            slf.clone().into_any(),
            PyTuple::empty(py),
            READABLE,
            Some(this.context.bind(py)),
        )?;
        Ok(())
    }
}

#[pymethods]
impl StreamCore {
    #[new]
    fn new(
        event_loop: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        transport: Bound<'_, PyAny>,
        context: Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let event_loop = event_loop.downcast::<Loop>()?.clone().unbind();
        let fd: i32 = sock.call_method0(intern!(sock.py(), "fileno"))?.extract()?;
        let context = crate::context::resolve(sock.py(), Some(&context))?;
        event_loop.get().transport_opened();
        Ok(StreamCore {
            event_loop,
            transport: transport.unbind(),
            fd,
            context,
            state: Mutex::new(State {
                protocol: None,
                data_received: None,
                protocol_type: None,
                buffered: false,
                protocol_connected: false,
                closing: false,
                eof: false,
                conn_lost: 0,
                paused: false,
                protocol_paused: false,
                high_water: 64 * 1024,
                low_water: 16 * 1024,
                buffer: Vec::new(),
                sent: 0,
                empty_waiter: None,
            }),
            counted: AtomicBool::new(true),
        })
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        visit.call(&self.transport)?;
        visit.call(&self.context)?;
        if let Ok(state) = self.state.try_lock() {
            visit.call(&state.protocol)?;
            visit.call(&state.data_received)?;
            visit.call(&state.protocol_type)?;
            visit.call(&state.empty_waiter)?;
        }
        Ok(())
    }

    fn set_protocol(&self, py: Python<'_>, protocol: Bound<'_, PyAny>) -> PyResult<()> {
        let buffered_type = BUFFERED_PROTOCOL.get_or_try_init(py, || {
            py.import(intern!(py, "asyncio"))?
                .getattr(intern!(py, "BufferedProtocol"))?
                .downcast_into::<PyType>()
                .map(Bound::unbind)
                .map_err(PyErr::from)
        })?;
        // As uvloop: a protocol with `get_buffer` is read as a buffered one, subclass of
        // `asyncio.BufferedProtocol` or not.
        let buffered = !protocol.is_none()
            && (protocol.is_instance(buffered_type.bind(py))?
                || protocol.hasattr(intern!(py, "get_buffer"))?);
        let protocol_type = (!protocol.is_none()).then(|| protocol.get_type().unbind());
        let data_received = if buffered || protocol.is_none() {
            None
        } else {
            // A failed lookup is left to each read, which then fails as asyncio's does.
            match protocol.getattr(intern!(py, "data_received")) {
                Ok(method) => Some(method.unbind()),
                Err(err) if is_fatal(py, &err) => return Err(err),
                Err(_) => None,
            }
        };
        let old = {
            let mut state = self.state();
            if protocol_type.is_some() {
                state.protocol_type = protocol_type;
            }
            state.buffered = buffered;
            state.protocol_connected = !protocol.is_none();
            let old_method = std::mem::replace(&mut state.data_received, data_received);
            (state.protocol.replace(protocol.unbind()), old_method)
        };
        drop(old);
        Ok(())
    }

    /// The type of the current (or last) protocol, for naming reads in monitor reports.
    #[getter]
    fn _protocol_type(&self, py: Python<'_>) -> Option<Py<PyType>> {
        self.state().protocol_type.as_ref().map(|t| t.clone_ref(py))
    }

    fn get_protocol(&self, py: Python<'_>) -> Py<PyAny> {
        self.state()
            .protocol
            .as_ref()
            .map(|p| p.clone_ref(py))
            .unwrap_or_else(|| py.None())
    }

    #[getter]
    fn _protocol(&self, py: Python<'_>) -> Py<PyAny> {
        self.get_protocol(py)
    }

    #[setter(_protocol)]
    fn set_protocol_attr(&self, py: Python<'_>, protocol: Bound<'_, PyAny>) -> PyResult<()> {
        let connected = self.state().protocol_connected;
        self.set_protocol(py, protocol)?;
        self.state().protocol_connected = connected;
        Ok(())
    }

    fn is_closing(&self) -> bool {
        self.state().closing
    }

    fn is_reading(&self) -> bool {
        let state = self.state();
        !state.closing && !state.paused
    }

    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        {
            let mut state = this.state();
            if state.closing || state.paused {
                return Ok(());
            }
            state.paused = true;
        }
        Loop::remove_watcher(this.event_loop.bind(slf.py()), this.fd, READABLE)?;
        Ok(())
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        {
            let mut state = this.state();
            if state.closing || !state.paused {
                return Ok(());
            }
            state.paused = false;
        }
        Self::start_reading(slf)
    }

    /// Starts watching for reads (the transport calls it once the protocol is connected).
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        if !slf.get().is_reading() {
            return Ok(());
        }
        Self::start_reading(slf)
    }

    /// The context the protocol's callbacks run in.
    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    /// The reader callback: one read, handed to the protocol.
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    /// The core is the fd watcher's reader callback: calling it is `_read_ready()`.
    fn __call__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    /// How asyncio's reprs name the reader callback (`<Handle StreamCore._read_ready()>`).
    #[getter]
    fn __qualname__(&self) -> &'static str {
        "StreamCore._read_ready"
    }

    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let owned;
        let bytes: &[u8] = if let Ok(b) = data.downcast::<PyBytes>() {
            b.as_bytes()
        } else if let Ok(b) = data.downcast::<PyByteArray>() {
            owned = b.to_vec();
            &owned
        } else if data.is_instance_of::<pyo3::types::PyMemoryView>() {
            owned = data
                .call_method0(intern!(py, "tobytes"))?
                .extract::<Vec<u8>>()?;
            &owned
        } else {
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not {}",
                data.get_type().name()?.repr()?
            )));
        };
        let mut state = this.state();
        if state.eof {
            return Err(PyRuntimeError::new_err(
                "Cannot call write() after write_eof()",
            ));
        }
        if state.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err(
                "unable to write; sendfile is in progress",
            ));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        if state.conn_lost > 0 {
            let log = state.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
            state.conn_lost += 1;
            drop(state);
            if log {
                py.import(intern!(py, "asyncio.log"))?
                    .getattr(intern!(py, "logger"))?
                    .call_method1(intern!(py, "warning"), ("socket.send() raised exception.",))?;
            }
            return Ok(());
        }
        if state.pending() > 0 {
            state.buffer.extend_from_slice(bytes);
        } else {
            // Nothing queued: try the socket now, buffer only what it did not take.
            let taken = match uv_sys::send(this.fd, bytes) {
                Ok(n) => n,
                Err(err) if would_block(&err) => 0,
                Err(err) => {
                    drop(state);
                    return Self::fatal(
                        slf,
                        os_error(err),
                        "Fatal write error on socket transport",
                    );
                }
            };
            if taken == bytes.len() {
                return Ok(());
            }
            state.buffer.clear();
            state.sent = 0;
            state.buffer.extend_from_slice(&bytes[taken..]);
            drop(state);
            Self::start_writing(slf)?;
            state = this.state();
        }
        let over = !state.protocol_paused && state.pending() > state.high_water;
        drop(state);
        if over {
            this.transport
                .bind(py)
                .call_method0(intern!(py, "_maybe_pause_protocol"))?;
        }
        Ok(())
    }

    /// The writer callback: sends what is buffered; once drained, stops watching.
    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut state = this.state();
        if state.conn_lost > 0 {
            return Ok(());
        }
        let sent = uv_sys::send(this.fd, &state.buffer[state.sent..]);
        match sent {
            Err(err) if would_block(&err) => return Ok(()),
            Err(err) => {
                state.buffer.clear();
                state.sent = 0;
                drop(state);
                Loop::remove_watcher(this.event_loop.bind(py), this.fd, WRITABLE)?;
                let err = os_error(err);
                let waiter = this.state().empty_waiter.as_ref().map(|w| w.clone_ref(py));
                Self::fatal(
                    slf,
                    err.clone_ref(py),
                    "Fatal write error on socket transport",
                )?;
                if let Some(waiter) = waiter {
                    let waiter = waiter.bind(py);
                    if !waiter.call_method0(intern!(py, "done"))?.is_truthy()? {
                        waiter.call_method1(intern!(py, "set_exception"), (err.value(py),))?;
                    }
                }
                return Ok(());
            }
            Ok(n) => state.sent += n,
        }
        let drained = state.pending() == 0;
        if drained {
            state.buffer.clear();
            state.sent = 0;
        } else if state.sent > state.buffer.len() / 2 {
            let sent = state.sent;
            state.buffer.drain(..sent);
            state.sent = 0;
        }
        let resume = state.protocol_paused && state.pending() <= state.low_water;
        drop(state);
        if resume {
            this.transport
                .bind(py)
                .call_method0(intern!(py, "_maybe_resume_protocol"))?;
        }
        if drained && this.state().pending() == 0 {
            Loop::remove_watcher(this.event_loop.bind(py), this.fd, WRITABLE)?;
            this.transport
                .bind(py)
                .call_method0(intern!(py, "_on_write_drained"))?;
        }
        Ok(())
    }

    fn get_write_buffer_size(&self) -> usize {
        self.state().pending()
    }

    /// Called just before the socket is closed: from now on writes are only counted.
    fn _detach(&self) {
        self.uncount();
        let mut state = self.state();
        state.conn_lost = state.conn_lost.max(1);
        state.closing = true;
        state.buffer = Vec::new();
        state.sent = 0;
    }

    /// Drops whatever is still buffered (an abort or a fatal error).
    fn _clear_buffer(&self) {
        let mut state = self.state();
        state.buffer = Vec::new();
        state.sent = 0;
    }

    #[getter]
    fn _sock_fd(&self) -> i32 {
        self.fd
    }

    #[getter]
    fn _closing(&self) -> bool {
        self.state().closing
    }

    #[setter(_closing)]
    fn set_closing_attr(&self, value: bool) {
        self.state().closing = value;
    }

    #[getter]
    fn _eof(&self) -> bool {
        self.state().eof
    }

    #[setter(_eof)]
    fn set_eof_attr(&self, value: bool) {
        self.state().eof = value;
    }

    #[getter]
    fn _conn_lost(&self) -> u32 {
        self.state().conn_lost
    }

    #[setter(_conn_lost)]
    fn set_conn_lost_attr(&self, value: u32) {
        self.state().conn_lost = value;
    }

    #[getter]
    fn _paused(&self) -> bool {
        self.state().paused
    }

    #[setter(_paused)]
    fn set_paused_attr(&self, value: bool) {
        self.state().paused = value;
    }

    #[getter]
    fn _protocol_connected(&self) -> bool {
        self.state().protocol_connected
    }

    #[setter(_protocol_connected)]
    fn set_protocol_connected_attr(&self, value: bool) {
        self.state().protocol_connected = value;
    }

    #[getter]
    fn _protocol_paused(&self) -> bool {
        self.state().protocol_paused
    }

    #[setter(_protocol_paused)]
    fn set_protocol_paused_attr(&self, value: bool) {
        self.state().protocol_paused = value;
    }

    #[getter]
    fn _high_water(&self) -> usize {
        self.state().high_water
    }

    #[setter(_high_water)]
    fn set_high_water_attr(&self, value: usize) {
        self.state().high_water = value;
    }

    #[getter]
    fn _low_water(&self) -> usize {
        self.state().low_water
    }

    #[setter(_low_water)]
    fn set_low_water_attr(&self, value: usize) {
        self.state().low_water = value;
    }

    #[getter]
    fn _empty_waiter(&self, py: Python<'_>) -> Py<PyAny> {
        self.state()
            .empty_waiter
            .as_ref()
            .map(|w| w.clone_ref(py))
            .unwrap_or_else(|| py.None())
    }

    #[setter(_empty_waiter)]
    fn set_empty_waiter_attr(&self, value: Bound<'_, PyAny>) {
        let new = if value.is_none() {
            None
        } else {
            Some(value.unbind())
        };
        let old = std::mem::replace(&mut self.state().empty_waiter, new);
        drop(old);
    }
}
