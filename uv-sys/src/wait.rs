//! libuv's monotonic clock, and (for the tests) waiting for descriptors with poll(2).

#[cfg(test)]
use std::io;

/// What `wait_readable` saw.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Bit i set: descriptor i of the slice is readable (or hung up / in error).
    Ready(u32),
    TimedOut,
    /// A signal arrived while waiting (EINTR): the caller should run signal handlers.
    Interrupted,
}

/// Waits until one of `fds` (at most 32) is readable or `timeout_ms` passes (-1: forever).
#[cfg(test)]
pub fn wait_readable(fds: &[i32], timeout_ms: i32) -> io::Result<Readiness> {
    assert!(
        fds.len() <= 32,
        "wait_readable takes at most 32 descriptors"
    );
    let mut pollfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 32];
    for (slot, &fd) in pollfds.iter_mut().zip(fds) {
        *slot = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
    }
    // SAFETY: `pollfds` is a live array of at least `fds.len()` initialised entries.
    let n = unsafe { libc::poll(pollfds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(Readiness::Interrupted)
        } else {
            Err(err)
        };
    }
    if n == 0 {
        return Ok(Readiness::TimedOut);
    }
    let mut bits = 0u32;
    for (i, p) in pollfds[..fds.len()].iter().enumerate() {
        if p.revents != 0 {
            bits |= 1 << i;
        }
    }
    Ok(Readiness::Ready(bits))
}

/// Nanoseconds of the monotonic clock (CLOCK_MONOTONIC on Linux, as Python's `time.monotonic`).
#[inline]
pub fn hrtime_ns() -> u64 {
    // SAFETY: uv_hrtime has no preconditions.
    unsafe { libuv_sys2::uv_hrtime() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_on_a_silent_pipe_and_sees_a_written_one() {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert_eq!(wait_readable(&[fds[0]], 0).unwrap(), Readiness::TimedOut);
        // SAFETY: fds[1] is the pipe's open write end; the buffer is one valid byte.
        assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
        assert_eq!(wait_readable(&[fds[0]], 1000).unwrap(), Readiness::Ready(1));
        // SAFETY: both descriptors are open and owned by this test.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    #[test]
    fn hrtime_moves_forward() {
        let a = hrtime_ns();
        let b = hrtime_ns();
        assert!(b >= a);
    }
}
