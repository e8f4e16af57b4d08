//! libuv reports errors as negative errno values; here they become `std::io::Error`.

use std::io;

/// Turns a libuv error code (negative errno on Unix) into an `io::Error`.
pub fn uv_error(code: i32) -> io::Error {
    // libuv's codes are `-errno` on Unix, so the OS error keeps errno and its message.
    io::Error::from_raw_os_error(-code)
}

/// `Ok(code)` for libuv's non-negative results, the error for the rest.
pub fn check(code: i32) -> io::Result<i32> {
    if code < 0 {
        Err(uv_error(code))
    } else {
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_codes_keep_errno() {
        let err = check(-libc::ECONNREFUSED).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(check(3).unwrap(), 3);
    }
}
