//! pidfd at restore. A pidfd of a process that was gone at dump time is a pidfd of a helper
//! that criu makes and reaps at once (one helper per dead process, one description per
//! entry); a pidfd of a task of the tree is opened on its pid once every task exists.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use criu_proto::dump_images::DumpImages;
use criu_proto::images::{FdTypes, PidfdEntry};

use crate::eventfd::restore::{failed, set_status_flags};
use crate::registry::{SharedError, SharedFiles};

/// The flags pidfd_open takes (PIDFD_NONBLOCK).
fn open_flags(e: &PidfdEntry) -> u32 {
    e.flags & libc::O_NONBLOCK as u32
}

/// Before the tasks exist: the pidfds of processes that were already gone.
pub fn open_dead(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    let mut by_process: BTreeMap<u32, Vec<(u32, &PidfdEntry)>> = BTreeMap::new();
    for (id, e) in shared.to_make(images, FdTypes::Pidfd, "pidfd", |f| f.pidfd.as_ref())? {
        if e.nspid == -1 {
            by_process.entry(e.ino).or_default().push((id, e));
        }
    }
    for entries in by_process.values() {
        let flags: Vec<u32> = entries.iter().map(|(_, e)| open_flags(e)).collect();
        let fds = criu_sys::pidfd::dead_pidfds(&flags)
            .map_err(failed(entries[0].0, "pidfd")("dead process"))?;
        for ((id, e), fd) in entries.iter().zip(fds) {
            set_status_flags(fd.as_fd(), e.flags).map_err(failed(*id, "pidfd")("F_SETFL"))?;
            shared.restore_fown(*id, &fd, &e.fown)?;
            shared.add_description(*id, fd);
        }
    }
    Ok(())
}

/// Once every task exists (before any takes its fds): the pidfds of tasks of the tree.
pub fn open_live(images: &DumpImages, shared: &SharedFiles) -> Result<(), SharedError> {
    for (id, e) in shared.to_make(images, FdTypes::Pidfd, "pidfd", |f| f.pidfd.as_ref())? {
        if e.nspid == -1 {
            continue;
        }
        let err = failed(id, "pidfd");
        let target = images.host_of(e.nspid);
        let fd = criu_sys::pidfd::open(target, open_flags(e)).map_err(err("pidfd_open"))?;
        set_status_flags(fd.as_fd(), e.flags).map_err(err("F_SETFL"))?;
        crate::fown::restore::set_signal(id, &fd, &e.fown)?;
        if e.fown.pid != 0 {
            let fown = criu_proto::images::FownEntry {
                pid: images.host_of(e.fown.pid as i32) as u32,
                ..e.fown
            };
            crate::fown::restore::set_owner(id, &fd, &fown)?;
        }
        shared.add_late_description(id, fd);
    }
    Ok(())
}
