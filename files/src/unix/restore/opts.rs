//! Shut-down directions, socket options and file status flags, set last on each restored
//! unix socket (the dump half is unix/dump/opts.rs).

use std::os::fd::{AsRawFd, OwnedFd};

use criu_proto::images::UnixSkEntry;
use nix::errno::Errno;
use nix::sys::socket;

use super::{sys, UnixRestoreError};

/// Shut-down directions, options and status flags.
pub(super) fn finish(e: &UnixSkEntry, fd: &OwnedFd) -> Result<(), UnixRestoreError> {
    let how = match e.shutdown.unwrap_or(0) {
        1 => Some(socket::Shutdown::Read),
        2 => Some(socket::Shutdown::Write),
        3 => Some(socket::Shutdown::Both),
        _ => None,
    };
    if let Some(how) = how {
        match socket::shutdown(fd.as_raw_fd(), how) {
            Ok(()) | Err(Errno::ENOTCONN) => {}
            Err(err) => return Err(sys(e.ino, "shutdown")(err)),
        }
    }
    set_options(e, fd)?;
    let settable = e.flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC);
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_retain(settable)),
    )
    .map_err(sys(e.ino, "F_SETFL"))?;
    Ok(())
}

fn set_options(e: &UnixSkEntry, fd: &OwnedFd) -> Result<(), UnixRestoreError> {
    crate::sk_opts::restore::apply(std::os::fd::AsFd::as_fd(fd), &e.opts)
        .map_err(|(what, err)| sys(e.ino, what)(err))
}
