//! Non-blocking socket reads and writes on a raw descriptor, for the native transports: the
//! descriptor is watched by a `Poll`, and the transport moves the bytes itself, so the read
//! happens inside the timed dispatch that delivers it.

use std::io;

/// `recv(2)` into `buf`; `Ok(0)` is end of stream. WouldBlock/Interrupted come back as errors.
pub fn recv(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable region of `buf.len()` bytes for the call's duration.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Whether `fd` is an open descriptor (fcntl F_GETFD succeeds).
pub fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed fd returns -1.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

#[cfg(target_os = "linux")]
const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;
#[cfg(not(target_os = "linux"))]
const SEND_FLAGS: i32 = 0;

/// `send(2)` of `data`; returns how much the kernel took.
pub fn send(fd: i32, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is a valid readable region of `data.len()` bytes for the call's duration.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), SEND_FLAGS) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_sent_on_one_end_are_received_on_the_other() {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair(2) writes.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        assert_eq!(send(fds[0], b"hello").unwrap(), 5);
        let mut buf = [0u8; 16];
        assert_eq!(recv(fds[1], &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        // SAFETY: both descriptors are open and owned by this test.
        unsafe {
            libc::close(fds[0]);
        }
        assert_eq!(recv(fds[1], &mut buf).unwrap(), 0);
        // SAFETY: as above.
        unsafe {
            libc::close(fds[1]);
        }
    }
}
