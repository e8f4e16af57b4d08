//! The blocked-loop watchdog.
//!
//! Each loop publishes the dispatch it runs in a `Probe` (two relaxed stores per dispatch, no
//! lock, no syscall). One native thread per process, the ticker, wakes a few times per
//! threshold, reads the probes of the loops it watches, and when a dispatch has run past its
//! loop's threshold hands a job to the capturer: a Python daemon thread (started by
//! `monitored_ioloop._watchdog`) that waits for jobs here with the GIL released, then takes the
//! GIL, reads the loop thread's stack while it is still blocked, and reports it. The ticker
//! never touches Python, so it cannot hang on the GIL; if the capturer has not got the GIL
//! within the threshold (the loop thread holds it in native code), the ticker marks the job so,
//! and the report says the stack could not be taken.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::clock::{tick, ticks_to_ns};

#[derive(Default)]
pub struct Probe {
    /// Tick at which the running dispatch started; 0 between dispatches.
    started: AtomicU64,
    /// Dispatches started so far: tells one stuck dispatch from the next.
    seq: AtomicU64,
    /// The dispatch the watchdog reported (0: none), until the loop has seen it end.
    reported: AtomicU64,
}

impl Probe {
    #[inline]
    pub fn enter(&self, start_tick: u64) {
        // One writer (the loop's thread): a load and a store, not a locked add.
        self.seq
            .store(self.seq.load(Relaxed).wrapping_add(1), Relaxed);
        self.started.store(start_tick.max(1), Relaxed);
    }

    /// Marks the dispatch finished; true if the watchdog reported one that has not been seen
    /// to end yet (then `take_reported` says which).
    #[inline]
    pub fn exit(&self) -> bool {
        self.started.store(0, Relaxed);
        self.reported.load(Relaxed) != 0
    }

    pub fn take_reported(&self) -> Option<u64> {
        let seq = self.reported.swap(0, Relaxed);
        (seq != 0).then_some(seq)
    }

    /// `(sequence number, start tick)` of the dispatch running now, if any.
    pub fn running(&self) -> Option<(u64, u64)> {
        let started = self.started.load(Relaxed);
        (started != 0).then(|| (self.seq.load(Relaxed), started))
    }
}

/// A stuck dispatch for the capturer to report.
pub struct Job {
    pub watch_id: u64,
    pub seq: u64,
    pub started_tick: u64,
    pub blocked_ns: u64,
    state: Arc<JobState>,
}

impl Job {
    /// Called by the capturer once it holds the GIL: true if that took longer than the
    /// threshold (the stack taken now may no longer be the blocking one).
    pub fn picked(&self) -> bool {
        self.state.picked.store(true, Relaxed);
        self.state.gil_unavailable.load(Relaxed)
    }
}

#[derive(Default)]
struct JobState {
    picked: AtomicBool,
    gil_unavailable: AtomicBool,
}

struct Watch {
    id: u64,
    probe: Arc<Probe>,
    threshold_ns: u64,
    last_seq: u64,
}

enum Control {
    Add(Watch),
    Remove(u64),
}

struct Running {
    /// The process that started it: a forked child has none of the parent's threads.
    pid: u32,
    control: Sender<Control>,
    jobs: Receiver<Job>,
}

/// The process's watchdog: None until a loop asks for one (and again in a forked child).
static WATCHDOG: Mutex<Option<Running>> = Mutex::new(None);
static NEXT_WATCH_ID: AtomicU64 = AtomicU64::new(1);
/// Set at interpreter exit: the capturer stops waiting for good.
static SHUT_DOWN: AtomicBool = AtomicBool::new(false);

/// Shortest and longest pause between two looks at the probes.
const MIN_INTERVAL: Duration = Duration::from_millis(1);
const MAX_INTERVAL: Duration = Duration::from_millis(250);

/// The process's watchdog state, with what a fork left behind of the parent's forgotten.
fn running() -> MutexGuard<'static, Option<Running>> {
    let mut guard = WATCHDOG.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_some_and(|r| r.pid != std::process::id()) {
        // The child never joins the parent's threads; dropping the channel ends is all there is.
        *guard = None;
    }
    guard
}

fn start() -> Running {
    let (control, control_rx) = crossbeam_channel::unbounded();
    let (jobs_tx, jobs) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("monitored_ioloop-watchdog".into())
        .spawn(move || ticker(control_rx, jobs_tx))
        .expect("spawning the watchdog thread");
    Running {
        pid: std::process::id(),
        control,
        jobs,
    }
}

fn ticker(control: Receiver<Control>, jobs: Sender<Job>) {
    let mut watches: Vec<Watch> = Vec::new();
    let mut waiting: Vec<(u64, u64, Arc<JobState>)> = Vec::new();
    loop {
        let interval = watches
            .iter()
            .map(|w| Duration::from_nanos(w.threshold_ns / 4))
            .min()
            .unwrap_or(MAX_INTERVAL)
            .clamp(MIN_INTERVAL, MAX_INTERVAL);
        match control.recv_timeout(interval) {
            Ok(Control::Add(watch)) => watches.push(watch),
            Ok(Control::Remove(id)) => watches.retain(|w| w.id != id),
            Err(RecvTimeoutError::Timeout) => {}
            // Every sender is gone (a forked child's copy was forgotten): nothing to watch.
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = tick();
        for watch in &mut watches {
            let Some((seq, started)) = watch.probe.running() else {
                continue;
            };
            let blocked_ns = ticks_to_ns(started, now);
            if blocked_ns < watch.threshold_ns || seq == watch.last_seq {
                continue;
            }
            watch.last_seq = seq;
            watch.probe.reported.store(seq, Relaxed);
            let state = Arc::new(JobState::default());
            waiting.push((now, watch.threshold_ns, state.clone()));
            let job = Job {
                watch_id: watch.id,
                seq,
                started_tick: started,
                blocked_ns,
                state,
            };
            if jobs.send(job).is_err() {
                return;
            }
        }
        waiting.retain(|(sent, threshold_ns, state)| {
            if state.picked.load(Relaxed) {
                return false;
            }
            if ticks_to_ns(*sent, now) >= *threshold_ns {
                state.gil_unavailable.store(true, Relaxed);
                return false;
            }
            true
        });
    }
}

/// Starts watching `probe` (starting the process's watchdog if needed); returns the watch's id.
pub fn watch(probe: Arc<Probe>, threshold_seconds: f64) -> PyResult<u64> {
    if !(threshold_seconds > 0.0 && threshold_seconds.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "watchdog_threshold must be a positive number of seconds, got {threshold_seconds}"
        )));
    }
    let id = NEXT_WATCH_ID.fetch_add(1, Relaxed);
    let watch = Watch {
        id,
        probe,
        threshold_ns: (threshold_seconds * 1e9) as u64,
        last_seq: 0,
    };
    let mut running = running();
    let control = &running.get_or_insert_with(start).control;
    if let Err(failed) = control.send(Control::Add(watch)) {
        // The ticker is gone (it never exits while a sender lives, but be sure): start anew.
        let fresh = start();
        let _ = fresh.control.send(failed.into_inner());
        *running = Some(fresh);
    }
    Ok(id)
}

pub fn unwatch(id: u64) {
    if let Some(running) = running().as_ref() {
        let _ = running.control.send(Control::Remove(id));
    }
}

/// Waits (the GIL released) for the next stuck dispatch to report; None once the watchdog is
/// gone, or after `timeout_seconds` with nothing to report.
pub fn next_job(py: Python<'_>, timeout_seconds: f64) -> Option<Job> {
    if SHUT_DOWN.load(Relaxed) {
        return None;
    }
    // The capturer may come before the first loop asks for a watchdog: start it now, so that
    // the first job reaches this wait.
    let jobs = running().get_or_insert_with(start).jobs.clone();
    let timeout = Duration::from_secs_f64(timeout_seconds.clamp(0.0, 3600.0));
    py.allow_threads(|| jobs.recv_timeout(timeout).ok())
}

/// Stops the process's watchdog (at interpreter exit): the ticker ends, and a capturer waiting
/// in `next_job` returns None at once.
pub fn shutdown() {
    SHUT_DOWN.store(true, Relaxed);
    let stopped = running().take();
    drop(stopped);
}

/// `_watchdog_next_job(timeout)`: the capturer's wait for the next stuck dispatch, as
/// `(watch_id, dispatch number, start tick, seconds blocked so far, gil_unavailable)`.
#[pyfunction]
pub fn _watchdog_next_job(py: Python<'_>, timeout: f64) -> Option<(u64, u64, u64, f64, bool)> {
    let job = next_job(py, timeout)?;
    let gil_unavailable = job.picked();
    Some((
        job.watch_id,
        job.seq,
        job.started_tick,
        job.blocked_ns as f64 * 1e-9,
        gil_unavailable,
    ))
}

/// `_watchdog_shutdown()`: stops the process's watchdog (interpreter exit).
#[pyfunction]
pub fn _watchdog_shutdown() {
    shutdown();
}
