//! Files in flight in a unix socket queue (SCM_RIGHTS), found for the refill: descriptions
//! criu already made for the tasks are sent as they are, regular files no task holds are
//! opened again, an epoll no task holds is made here with its targets registered.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use criu_proto::images::{EventpollFileEntry, EventpollTfdEntry, FdTypes};

use super::{fail, UnixRestoreError};
use crate::registry::SharedFiles;
use criu_proto::dump_images::DumpImages;

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

/// File `id`, carried in the queue of socket `for_id`; `made` are the sockets made so far.
pub fn open(
    images: &DumpImages,
    shared: &SharedFiles,
    id: u32,
    for_id: u32,
    made: &BTreeMap<u32, OwnedFd>,
) -> Result<InFlight, UnixRestoreError> {
    if let Some(raw) = shared.description(id) {
        return Ok(InFlight::Held(raw));
    }
    let f = images
        .files
        .get(&id)
        .ok_or_else(|| fail(0, format!("file {id} in flight is not in files.img")))?;
    match (f.r#type, &f.reg) {
        (t, Some(reg)) if t == FdTypes::Reg as i32 => {
            crate::regular::restore::open(&shared.root, reg)
                .map(InFlight::Opened)
                .map_err(|e| fail(0, format!("file {id} in flight: {e}")))
        }
        (t, _) if t == FdTypes::Eventpoll as i32 => {
            let e = f
                .epfd
                .as_ref()
                .ok_or_else(|| fail(0, format!("epoll {id} in flight has no epfd entry")))?;
            let target = |tfd: &EventpollTfdEntry| target_of(images, shared, made, e, for_id, tfd);
            crate::epoll::restore::make_in_flight(e, &target)
                .map(InFlight::Opened)
                .map_err(|what| fail(0, format!("epoll {id} in flight: {what}")))
        }
        _ => Err(fail(
            0,
            format!(
                "file {id} in flight (type {}) cannot be opened here",
                f.r#type
            ),
        )),
    }
}

/// A copy of the file an in-flight epoll's target names: the target's number is one of the
/// task that holds the receiving socket `for_id` (the first such task that has every target
/// number open), as at dump.
fn target_of(
    images: &DumpImages,
    shared: &SharedFiles,
    made: &BTreeMap<u32, OwnedFd>,
    e: &EventpollFileEntry,
    for_id: u32,
    tfd: &EventpollTfdEntry,
) -> Result<OwnedFd, String> {
    let holders = images
        .tasks
        .iter()
        .filter(|t| t.fds.iter().any(|f| f.id == for_id));
    let has_all = |t: &&criu_proto::dump_images::TaskImages| {
        e.tfd.iter().all(|x| t.fds.iter().any(|f| f.fd == x.tfd))
    };
    let task = holders.clone().find(has_all).ok_or_else(|| {
        format!(
            "target fd {} is not open in any task holding socket {for_id}, which receives it",
            tfd.tfd
        )
    })?;
    let fid = task
        .fds
        .iter()
        .find(|f| f.fd == tfd.tfd)
        .map(|f| f.id)
        .unwrap_or_default();
    let what = |err: std::io::Error| format!("target fd {} (file {fid}): copy: {err}", tfd.tfd);
    if let Some(fd) = made.get(&fid) {
        return fd.try_clone().map_err(what);
    }
    let raw = shared.description(fid).ok_or_else(|| {
        format!(
            "target fd {} (file {fid}) of pid {} is not open in criu yet",
            tfd.tfd,
            task.pid()
        )
    })?;
    criu_sys::pidfd::take_fd(std::process::id() as i32, raw).map_err(|e| what(e.into()))
}
