//! Errors of the tracee engine. Each names the task and what failed.

use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum TraceeError {
    #[error("tid {tid}: {what}: {errno}")]
    Ptrace {
        tid: i32,
        what: &'static str,
        errno: Errno,
    },
    #[error("tid {tid}: {what}: {source}")]
    Io {
        tid: i32,
        what: String,
        source: std::io::Error,
    },
    #[error("tid {tid}: task is gone ({how})")]
    Gone { tid: i32, how: String },
    #[error("tid {tid}: {what}")]
    Unexpected { tid: i32, what: String },
    #[error("tid {tid}: did not stop within {secs:.1}s")]
    Timeout { tid: i32, secs: f64 },
    #[error("tid {tid}: injected {name} failed: {errno}")]
    Injected {
        tid: i32,
        name: &'static str,
        errno: Errno,
    },
    #[error("cgroup freezer: {0}")]
    Freezer(#[from] criu_cgroups::freezer::FreezerError),
}

pub type Result<T> = std::result::Result<T, TraceeError>;

/// Maps an errno from a ptrace request on `tid` to an error that says what was asked.
pub(crate) fn ptrace_err(tid: i32, what: &'static str) -> impl FnOnce(Errno) -> TraceeError {
    move |errno| TraceeError::Ptrace { tid, what, errno }
}

pub(crate) fn io_err(
    tid: i32,
    what: impl Into<String>,
) -> impl FnOnce(std::io::Error) -> TraceeError {
    let what = what.into();
    move |source| TraceeError::Io { tid, what, source }
}
