//! Small conveniences over an injection session for rebuilding a task: syscalls by name,
//! paths and argument blocks placed in the scratch data area.

use crate::{Injector, TraceeError};

/// Where arguments go in the scratch data area.
pub const PATH_AT: usize = 0;
pub const PATH_MAX: usize = 4096;
pub const ARG_AT: usize = PATH_MAX;
/// Room for the largest seccomp program (BPF_MAXINSNS, 4096 instructions of 8 bytes) and its
/// header: container runtimes install filters of over a thousand instructions.
pub const ARG_MAX: usize = 4096 * 8 + 4096;
/// Scratch data needed by a rebuild.
pub const DATA_LEN: usize = PATH_MAX + ARG_MAX;

pub struct Remote<'a, 't> {
    pub inj: &'a mut Injector<'t>,
}

impl<'a, 't> Remote<'a, 't> {
    pub fn new(inj: &'a mut Injector<'t>) -> Self {
        Remote { inj }
    }

    /// Runs a syscall; a negative result is an error naming it.
    pub fn call(&mut self, name: &'static str, nr: i64, args: &[u64]) -> Result<i64, TraceeError> {
        self.inj.syscall_ok(name, nr, args)
    }

    /// Runs a syscall and returns its raw result (negative errno on failure).
    pub fn try_call(&mut self, nr: i64, args: &[u64]) -> Result<i64, TraceeError> {
        self.inj.syscall(nr, args)
    }

    /// Copies a NUL-terminated path into the task; returns its address there.
    pub fn path(&mut self, path: &str) -> Result<u64, TraceeError> {
        let mut bytes = path.as_bytes().to_vec();
        bytes.push(0);
        if bytes.len() > PATH_MAX {
            return Err(TraceeError::Unexpected {
                tid: self.inj.tracee().tid(),
                what: format!("path too long: {path}"),
            });
        }
        self.inj.write_data(PATH_AT, &bytes)
    }

    /// Copies an argument block into the task; returns its address there.
    pub fn arg(&mut self, bytes: &[u8]) -> Result<u64, TraceeError> {
        self.inj.write_data(ARG_AT, bytes)
    }

    /// Opens `path` in the task with `flags`; returns the new fd.
    pub fn open(&mut self, path: &str, flags: i32) -> Result<u64, TraceeError> {
        let at = self.path(path)?;
        let fd = self.call(
            "openat",
            libc::SYS_openat,
            &[libc::AT_FDCWD as u64, at, flags as u64, 0],
        )?;
        Ok(fd as u64)
    }

    pub fn close(&mut self, fd: u64) -> Result<(), TraceeError> {
        self.call("close", libc::SYS_close, &[fd]).map(drop)
    }
}

/// Lays out u64 words as little-endian bytes.
pub fn words(w: &[u64]) -> Vec<u8> {
    w.iter().flat_map(|v| v.to_le_bytes()).collect()
}
