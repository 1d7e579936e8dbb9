//! Open files: every kind of file a task can hold, each kind in its own module with its dump
//! half (`dump.rs`) and its restore half (`restore.rs`) side by side.
//!
//! The orchestrator drives this crate through a small surface, the same shape every domain
//! crate follows:
//!
//! Dump
//! * [`FileTable`]: one per dump, shared by every task actor; it numbers each open file
//!   description once, as CRIU does.
//! * [`collect::dump_fds`] (and [`collect::proc_special`], [`collect::mapped_special`]):
//!   collect one task's fds into `fdinfo` entries; [`FdTables`] finds fd tables shared
//!   between processes.
//! * [`write_images`]: once every task is collected, write the images the tasks share
//!   (`files.img`, tty, locks, pipe and FIFO data, memfd inodes, remaps).
//!
//! Restore
//! * [`prepare`]: what the file kinds need before any task exists (terminals, remapped names).
//! * [`Prepared::open_shared`]: opens every shared object in criu, once, into the description
//!   registry [`SharedFiles`]; [`after_tasks_exist`] sets what names tasks (owners, seals).
//! * [`install`]: puts one task's fds, cwd and root in place from inside it (injected
//!   syscalls), each a copy of criu's description taken with `pidfd_getfd`;
//!   [`Prepared::finish`] once every task has its files.

pub mod collect;
pub mod epoll;
pub mod eventfd;
pub mod fanotify;
pub mod fd_table;
pub mod fifo;
pub mod fown;
pub mod ghost;
pub mod inet;
pub mod inherit;
pub mod inotify;
pub mod install;
pub mod locks;
pub mod memfd;
pub mod mqueue;
pub mod netlink;
pub mod netns;
pub mod nsfile;
pub mod packet;
pub mod pidfd;
pub mod pipes;
pub mod registry;
pub mod regular;
pub mod root;
pub mod signalfd;
pub mod sk_opts;
pub mod sock_diag;
pub mod socket;
pub mod table;
pub mod timerfd;
pub mod tty;
pub mod tun;
pub mod unix;

mod surface;

pub use fd_table::FdTables;
pub use registry::{OrphanPtsMaster, RestoreFileOptions, SharedError, SharedFiles};
pub use root::FsRoot;
pub use surface::{after_tasks_exist, prepare, write_images, Prepared, RestoreFilesError};
pub use table::{DumpFileOptions, FileTable, FilesError};

use criu_tracee::TraceeError;

/// An error while installing files inside a task.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Tracee(#[from] TraceeError),
    /// The pid is named by the caller's message.
    #[error("{what}")]
    Task { pid: i32, what: String },
}

pub(crate) fn task_err(pid: i32, what: impl Into<String>) -> InstallError {
    InstallError::Task {
        pid,
        what: what.into(),
    }
}
