//! Real probes of the running kernel, for `criu check`.
//!
//! Each probe makes the same kind of call that the feature needs (fork and trace a child, open a
//! socket and set an option, ask netlink, ...) and answers `Ok(())` when the kernel has the
//! feature. Everything a probe creates (children, fds, mappings, mounts, namespaces) is gone
//! when it returns.

mod child;
pub mod files;
pub mod memory;
pub mod mounts;
pub mod namespaces;
pub mod netlink;
mod nl;
pub mod process;
pub mod ptrace;
pub mod sockets;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_net;

use nix::errno::Errno;

/// Why a probe answered "no".
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A call the probe needed failed.
    #[error("{what}: {errno}")]
    Sys { what: String, errno: Errno },
    /// The kernel answered, and the answer is that the feature is missing.
    #[error("{0}")]
    Missing(String),
}

impl ProbeError {
    /// The errno of a failed call, if that is why the probe said no.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            ProbeError::Sys { errno, .. } => Some(*errno),
            ProbeError::Missing(_) => None,
        }
    }
}

/// `Ok(())`: the kernel has the feature.
pub type ProbeResult = Result<(), ProbeError>;

/// Builds a `map_err` adapter that names the failed call.
pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> ProbeError {
    let what = what.into();
    move |errno| ProbeError::Sys { what, errno }
}

pub(crate) fn missing(msg: impl Into<String>) -> ProbeError {
    ProbeError::Missing(msg.into())
}

/// Turns a raw `syscall()`/`ioctl()` return value into a Result with the thread's errno.
pub(crate) fn check_ret(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// Wraps a new fd number so that it is closed on every path.
pub(crate) fn own_fd(fd: libc::c_long) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: callers pass a fd number the kernel just returned to us and nothing else owns.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) }
}
