//! Files in flight in a unix socket queue (SCM_RIGHTS), found for the refill: descriptions
//! criu already made for the tasks are sent as they are, regular files no task holds are
//! opened again.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use criu_proto::images::FdTypes;

use super::super::images::DumpImages;
use super::super::shared::SharedFiles;
use super::{fail, UnixRestoreError};

/// A file to send: one `SharedFiles` keeps open, or one opened for the send.
pub enum InFlight {
    Held(RawFd),
    Opened(OwnedFd),
}

impl InFlight {
    pub fn raw(&self) -> RawFd {
        match self {
            InFlight::Held(fd) => *fd,
            InFlight::Opened(fd) => fd.as_raw_fd(),
        }
    }
}

pub fn open(
    images: &DumpImages,
    shared: &SharedFiles,
    id: u32,
) -> Result<InFlight, UnixRestoreError> {
    if let Some(raw) = shared.description(id) {
        return Ok(InFlight::Held(raw));
    }
    let f = images
        .files
        .get(&id)
        .ok_or_else(|| fail(0, format!("file {id} in flight is not in files.img")))?;
    match (f.r#type, &f.reg) {
        (t, Some(reg)) if t == FdTypes::Reg as i32 => super::super::regular::open(reg)
            .map(InFlight::Opened)
            .map_err(|e| fail(0, format!("file {id} in flight: {e}"))),
        _ => Err(fail(
            0,
            format!(
                "file {id} in flight (type {}) cannot be opened here",
                f.r#type
            ),
        )),
    }
}
