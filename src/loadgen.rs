//! A TCP echo load generator for the benchmark, in Rust so that it runs without the GIL and is
//! never the bottleneck: each connection is a thread that sends a message, reads the same
//! number of bytes back, and records the round trip's latency.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;

struct ConnectionResult {
    latencies_us: Vec<u32>,
    bytes: u64,
}

fn run_connection(
    addr: &str,
    message: &[u8],
    warmup: Duration,
    measure: Duration,
) -> std::io::Result<ConnectionResult> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; message.len()];
    let started = Instant::now();
    let measure_from = started + warmup;
    let end = measure_from + measure;
    let mut result = ConnectionResult {
        latencies_us: Vec::new(),
        bytes: 0,
    };
    loop {
        let sent_at = Instant::now();
        if sent_at >= end {
            break;
        }
        stream.write_all(message)?;
        stream.read_exact(&mut buf)?;
        if sent_at >= measure_from {
            let micros = sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32;
            result.latencies_us.push(micros);
            result.bytes += message.len() as u64;
        }
    }
    Ok(result)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 * 1e-6
}

/// Runs `connections` echo clients against `addr` ("host:port") for `warmup` + `duration`
/// seconds; returns requests/s and latency percentiles (seconds) over the measured part.
#[pyfunction]
#[pyo3(signature = (addr, message_size, connections, duration, warmup=0.5))]
pub fn echo_load<'py>(
    py: Python<'py>,
    addr: String,
    message_size: usize,
    connections: usize,
    duration: f64,
    warmup: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let message: Vec<u8> = (0..message_size).map(|i| (i % 251) as u8).collect();
    let warmup = Duration::from_secs_f64(warmup.max(0.0));
    let measure = Duration::from_secs_f64(duration.max(0.01));
    let results = py.allow_threads(|| {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..connections.max(1))
                .map(|_| scope.spawn(|| run_connection(&addr, &message, warmup, measure)))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("client panicked")))
                })
                .collect::<Vec<_>>()
        })
    });
    let mut latencies = Vec::new();
    let mut bytes = 0u64;
    for result in results {
        let result = result.map_err(crate::event_loop::os_error)?;
        latencies.extend(result.latencies_us);
        bytes += result.bytes;
    }
    latencies.sort_unstable();
    let seconds = measure.as_secs_f64();
    let out = PyDict::new(py);
    out.set_item("requests", latencies.len())?;
    out.set_item("requests_per_second", latencies.len() as f64 / seconds)?;
    out.set_item("bytes_per_second", bytes as f64 / seconds)?;
    out.set_item("p50", percentile(&latencies, 50.0))?;
    out.set_item("p99", percentile(&latencies, 99.0))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 51e-6);
        assert_eq!(percentile(&v, 99.0), 99e-6);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
