//! Fds handed to this process by whoever started it.

use std::os::fd::OwnedFd;

use nix::errno::Errno;

/// Takes ownership of `fd`, an fd this process was given by whoever started it (`criu swrk
/// FD`): checked to be open, then closed when the result drops.
pub fn own_inherited(fd: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: F_GETFD only reads the flags of whatever the number names, if anything.
    crate::ret::check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the fd is open (checked above) and was handed to this process for the caller's
    // use alone; nothing else in the process owns the number.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Closes every fd from `first` up (close_range): a helper that must not keep criu's sockets
/// or inherited fds open.
pub fn close_from(first: u32) -> Result<(), Errno> {
    // SAFETY: close_range takes only integers; the caller owns nothing past `first`.
    crate::ret::check(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) })
        .map(drop)
}
