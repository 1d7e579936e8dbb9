//! Rebuilding one process inside its stub by injected syscalls (design.md section 5): the
//! stub's own memory and fds go, the dumped ones come back, then the task's own state (the
//! domain crates do each part; this module names their errors and holds the task's place in
//! its session, a step of the tree plan). Registers are set last, by the caller, when the
//! scratch area goes away.

use criu_proto::dump_images::TaskImages;
use criu_tracee::remote::Remote;
use criu_tracee::TraceeError;

pub use criu_process::restore_task::*;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Tracee(#[from] TraceeError),
    #[error(transparent)]
    Memory(#[from] criu_memory::restore::RestoreMemError),
    #[error(transparent)]
    Files(#[from] criu_files::InstallError),
    #[error(transparent)]
    Process(#[from] RestoreTaskError),
    #[error(transparent)]
    Namespace(#[from] criu_ns::NsImageError),
    /// The pid is named by the caller's message.
    #[error("{what}")]
    Task { pid: i32, what: String },
}

pub(crate) fn task_err(pid: i32, what: impl Into<String>) -> RebuildError {
    RebuildError::Task {
        pid,
        what: what.into(),
    }
}

/// Session and process group of a newly created task, before it has children: with `setsid` it
/// starts its session, else a group leader starts its group (later setsids and group joins are
/// steps of the plan, see plan.rs). A child subreaper becomes one now, so that orphans of the
/// helpers that exit during the restore come back to it.
pub fn restore_session(r: &mut Remote, t: &TaskImages, setsid: bool) -> Result<(), RebuildError> {
    let pid = t.pstree.pid;
    if setsid {
        r.call("setsid", libc::SYS_setsid, &[])?;
    } else if t.pstree.pgid == pid && t.pstree.sid != pid {
        r.call("setpgid", libc::SYS_setpgid, &[0, 0])?;
    }
    let subreaper = t.cores.first().and_then(|c| c.tc.as_ref());
    if subreaper.and_then(|tc| tc.child_subreaper) == Some(true) {
        become_subreaper(r)?;
    }
    Ok(())
}

pub use criu_files::install::*;
pub use criu_memory::aio::restore_aio_rings;
pub use criu_memory::rebuild::*;
