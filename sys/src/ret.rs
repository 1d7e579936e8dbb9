//! Raw syscall results, where a negative return means "see errno".

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

/// A raw return value as a Result with the thread's errno.
pub(crate) fn check<T: Copy + Into<i64>>(ret: T) -> Result<T, Errno> {
    if ret.into() < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// A raw return value that is a new fd, owned (closed on every path).
pub(crate) fn new_fd<T: Copy + Into<i64>>(ret: T) -> Result<OwnedFd, Errno> {
    let fd = check(ret)?.into();
    // SAFETY: callers pass what a syscall that makes an fd just returned: a new fd number
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
