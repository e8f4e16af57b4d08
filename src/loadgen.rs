//! Load generators for the benchmark, in Rust so that they run without the GIL and are never
//! the bottleneck: each connection is a thread that sends a request, reads the whole answer and
//! records the round trip's latency. Two kinds of request: an echo message (the same number of
//! bytes come back) and an HTTP/1.1 keep-alive GET (a response with Content-Length).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;

struct ConnectionResult {
    latencies_us: Vec<u32>,
    bytes: u64,
}

#[derive(Clone, Copy)]
enum Exchange {
    Echo,
    Http,
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its size in bytes.
fn read_http_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| std::io::Error::other("response without Content-Length"))?;
            let total = end + 4 + length;
            while pending.len() < total {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                pending.extend_from_slice(&chunk[..n]);
            }
            pending.drain(..total);
            return Ok(total);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

fn run_connection(
    addr: &str,
    message: &[u8],
    exchange: Exchange,
    warmup: Duration,
    measure: Duration,
) -> std::io::Result<ConnectionResult> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; message.len()];
    let mut pending = Vec::new();
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
        let received = match exchange {
            Exchange::Echo => {
                stream.read_exact(&mut buf)?;
                buf.len()
            }
            Exchange::Http => read_http_response(&mut stream, &mut pending)?,
        };
        if sent_at >= measure_from {
            let micros = sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32;
            result.latencies_us.push(micros);
            result.bytes += received as u64;
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

fn run_load<'py>(
    py: Python<'py>,
    addr: String,
    message: Vec<u8>,
    exchange: Exchange,
    connections: usize,
    duration: f64,
    warmup: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let warmup = Duration::from_secs_f64(warmup.max(0.0));
    let measure = Duration::from_secs_f64(duration.max(0.01));
    let results = py.allow_threads(|| {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..connections.max(1))
                .map(|_| scope.spawn(|| run_connection(&addr, &message, exchange, warmup, measure)))
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
    run_load(
        py,
        addr,
        message,
        Exchange::Echo,
        connections,
        duration,
        warmup,
    )
}

/// Runs `connections` keep-alive HTTP/1.1 clients sending `GET path` to `addr`, as
/// `echo_load` does for echo.
#[pyfunction]
#[pyo3(signature = (addr, path, connections, duration, warmup=0.5))]
pub fn http_load<'py>(
    py: Python<'py>,
    addr: String,
    path: String,
    connections: usize,
    duration: f64,
    warmup: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    run_load(
        py,
        addr,
        request,
        Exchange::Http,
        connections,
        duration,
        warmup,
    )
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
