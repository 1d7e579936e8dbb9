//! System V IPC of an IPC namespace (shm segments, semaphore sets, message queues and the IPC
//! sysctls), in CRIU's ipcns-{var,shm,sem,msg}-<ns_id>.img images.
//!
//! All the work runs in a thread of criu that joined the namespace ([`crate::enter`]): the
//! SysV calls and /proc/sys/kernel there act on that namespace.
//!
//! POSIX message queues of the namespace go to criu-rs's own `ipcns-posix-mq-<ns_id>.img`
//! (see [`crate::mqueue`]).
//!
//! - dump: [`dump`] while the namespace's tasks are frozen.
//! - restore: [`restore`] into the fresh namespace before its tasks run; then, once they have
//!   attached their segments, [`restore_rmid_forced`] (a set kernel.shm_rmid_forced destroys
//!   every segment nobody attached, so it cannot come earlier).
//!
//! As CRIU: uids are written as seen from criu (no user namespace mapping yet), cuid/cgid,
//! times and semaphore undo lists are not restored, and a segment removed while still
//! attached (SHM_DEST in its mode) comes back as a live one with key IPC_PRIVATE.

mod dump;
mod restore;
mod var;

use std::path::Path;

use criu_procfs::NsKind;
use nix::errno::Errno;

use crate::enter::{in_namespaces_of, EnterError};

/// What a dump wrote, for logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcCounts {
    pub shm_segments: u32,
    pub sem_sets: u32,
    pub msg_queues: u32,
    /// POSIX message queues (see `mqueue`).
    pub posix_queues: u32,
    pub shm_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("ipc namespace of pid {pid}: {source}")]
    Enter { pid: i32, source: EnterError },
    #[error("ipc namespace of pid {pid}: {what}: {errno}")]
    Kernel {
        pid: i32,
        what: String,
        errno: Errno,
    },
    #[error("ipc namespace of pid {pid}: {path}: {source}")]
    Sysctl {
        pid: i32,
        path: String,
        source: std::io::Error,
    },
    #[error("ipc namespace of pid {pid}: {source}")]
    Image { pid: i32, source: criu_proto::Error },
    #[error("ipc namespace of pid {pid}: {what}")]
    Bad { pid: i32, what: String },
}

/// An error inside the namespace thread, before the pid is added.
#[derive(Debug)]
pub(crate) enum Fail {
    Kernel(String, Errno),
    Sysctl(String, std::io::Error),
    Image(criu_proto::Error),
    Bad(String),
}

impl Fail {
    fn sysctl(path: &str, e: std::io::Error) -> Self {
        Fail::Sysctl(path.to_string(), e)
    }

    fn with_pid(self, pid: i32) -> IpcError {
        match self {
            Fail::Kernel(what, errno) => IpcError::Kernel { pid, what, errno },
            Fail::Sysctl(path, source) => IpcError::Sysctl { pid, path, source },
            Fail::Image(source) => IpcError::Image { pid, source },
            Fail::Bad(what) => IpcError::Bad { pid, what },
        }
    }
}

impl From<criu_proto::Error> for Fail {
    fn from(e: criu_proto::Error) -> Self {
        Fail::Image(e)
    }
}

/// `Errno` to `Fail`, naming the object and the step.
trait Context<T> {
    fn what(self, what: impl FnOnce() -> String) -> Result<T, Fail>;
}

impl<T> Context<T> for Result<T, Errno> {
    fn what(self, what: impl FnOnce() -> String) -> Result<T, Fail> {
        self.map_err(|e| Fail::Kernel(what(), e))
    }
}

/// Zero bytes that pad `len` up to a multiple of `to`.
fn padding(len: u64, to: u64) -> u64 {
    (to - len % to) % to
}

fn in_ns<T: Send>(pid: i32, work: impl FnOnce() -> Result<T, Fail> + Send) -> Result<T, IpcError> {
    in_namespaces_of(pid, &[NsKind::Ipc], work)
        .map_err(|source| IpcError::Enter { pid, source })?
        .map_err(|f| f.with_pid(pid))
}

/// Writes ipcns-var-<ns_id>.img, ipcns-shm-<ns_id>.img, ipcns-sem-<ns_id>.img,
/// ipcns-msg-<ns_id>.img for the IPC namespace of host pid `pid`.
pub fn dump(pid: i32, ns_id: u32, dir: &Path) -> Result<IpcCounts, IpcError> {
    in_ns(pid, || dump::dump_all(ns_id, dir))
}

/// Recreates those objects (exact ids, keys, modes, owners, contents, sysctls) inside the
/// (fresh, empty) IPC namespace of host pid `pid`. kernel.shm_rmid_forced is left to
/// [`restore_rmid_forced`] when the image sets it and has segments.
pub fn restore(pid: i32, ns_id: u32, dir: &Path) -> Result<(), IpcError> {
    in_ns(pid, || restore::restore_all(ns_id, dir))
}

/// Sets kernel.shm_rmid_forced from the image, once the restored tasks have attached their
/// segments (before that it would destroy them). Does nothing when the image has it at 0.
pub fn restore_rmid_forced(pid: i32, ns_id: u32, dir: &Path) -> Result<(), IpcError> {
    in_ns(pid, || {
        let var = restore::read_var(ns_id, dir)?;
        if var.shm_rmid_forced != 0 {
            var::write_rmid_forced(var.shm_rmid_forced)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn padding_holds_for_any_length() {
        assert_eq!(super::padding(5000, 4), 0);
        assert_eq!(super::padding(5001, 8), 7);
        assert_eq!(super::padding(0, 8), 0);
        assert_eq!(super::padding(u64::MAX, 4), 1);
    }
}
