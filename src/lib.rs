//! The `monitored_ioloop._native` extension module: the event loop core, its callback handles
//! and native monitoring. Each concern lives in its own module; this file only registers them.

mod context;
mod event_loop;
mod fastcall;
mod gil_cell;
mod handles;
mod io_watchers;
mod loadgen;
mod loop_slots;
mod monitoring;
mod reuse;
mod sock_ops;
mod timers;
mod transport;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<event_loop::Loop>()?;
    fastcall::install(m.py(), &m.py().get_type::<event_loop::Loop>())?;
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    m.add_class::<transport::StreamCore>()?;
    transport::remember_type(m.py());
    m.add_class::<sock_ops::SockRecv>()?;
    sock_ops::remember_type(m.py());
    m.add_class::<monitoring::IoLoopMonitorState>()?;
    monitoring::install_members(m.py(), &m.py().get_type::<monitoring::IoLoopMonitorState>())?;
    m.add("HISTOGRAM_SUB_BITS", monitoring::HISTOGRAM_SUB_BITS)?;
    m.add_function(wrap_pyfunction!(event_loop::_histogram_of, m)?)?;
    m.add_function(wrap_pyfunction!(loadgen::echo_load, m)?)?;
    m.add_function(wrap_pyfunction!(
        monitoring::names::_callback_pretty_name,
        m
    )?)?;
    m.add_function(wrap_pyfunction!(
        monitoring::watchdog::_watchdog_next_job,
        m
    )?)?;
    m.add_function(wrap_pyfunction!(
        monitoring::watchdog::_watchdog_shutdown,
        m
    )?)?;
    m.add_function(wrap_pyfunction!(loadgen::http_load, m)?)?;
    Ok(())
}
