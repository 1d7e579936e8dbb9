//! epoll at restore: criu creates each epoll description (empty); its targets are registered
//! later, inside one task that holds it, once that task's fds are all at their numbers, so the
//! kernel records the task's own fd numbers (EPOLL_CTL_MOD/DEL by the program use them). The
//! registering task is the first one (in pstree order) that holds the epoll and has every
//! target number open; every other holder shares the description, registrations included.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};

use criu_proto::images::{EventpollFileEntry, EventpollTfdEntry, FdTypes};
use criu_tracee::remote::Remote;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use crate::registry::{SharedError, SharedFiles};
use crate::{task_err, InstallError};
use criu_proto::dump_images::{DumpImages, TaskImages};

/// Targets of every epoll to restore, with the task that registers them.
#[derive(Debug, Default)]
pub struct EpollTargets {
    /// By files.img id: (registering pid, targets).
    by_id: BTreeMap<u32, (i32, Vec<EventpollTfdEntry>)>,
}

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    for (id, e) in shared.to_make(images, FdTypes::Eventpoll, "epfd", |f| f.epfd.as_ref())? {
        // An inherited epoll is used as it is: nothing is registered on it.
        let err = |what: &'static str| {
            move |errno| SharedError::File {
                id,
                path: "anon_inode:[eventpoll]".into(),
                what,
                errno,
            }
        };
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(err("epoll_create1"))?;
        let fd: OwnedFd = ep.0;
        crate::eventfd::restore::set_status_flags(fd.as_fd(), e.flags).map_err(err("F_SETFL"))?;
        shared.restore_fown(id, &fd, &e.fown)?;
        shared.add_description(id, fd);
        // The first holder that has every target number open; if none has, the first holder
        // (whose registration then fails naming the missing fd).
        let holders: Vec<&TaskImages> = images
            .tasks
            .iter()
            .filter(|t| t.fds.iter().any(|f| f.id == id))
            .collect();
        let has_all = |t: &&&TaskImages| {
            e.tfd
                .iter()
                .all(|tfd| t.fds.iter().any(|f| f.fd == tfd.tfd))
        };
        let owner = holders
            .iter()
            .find(has_all)
            .or(holders.first())
            .map_or(0, |t| t.pid());
        shared.epolls.by_id.insert(id, (owner, e.tfd.clone()));
    }
    Ok(())
}

/// An epoll in flight in a unix socket queue, which no task holds: made in criu with its
/// targets registered on the files `target` gives (criu's copies of them), so the kernel
/// records criu's fd numbers for them.
pub fn make_in_flight(
    e: &EventpollFileEntry,
    target: &dyn Fn(&EventpollTfdEntry) -> Result<OwnedFd, String>,
) -> Result<OwnedFd, String> {
    if e.fown.pid != 0 {
        return Err("its owner (F_SETOWN) cannot be restored for a file in flight".into());
    }
    let ep =
        Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll_create1: {e}"))?;
    crate::eventfd::restore::set_status_flags(ep.0.as_fd(), e.flags)
        .map_err(|e| format!("F_SETFL: {e}"))?;
    for tfd in &e.tfd {
        let file = target(tfd)?;
        let flags = EpollFlags::from_bits_retain(tfd.events as i32);
        ep.add(&file, EpollEvent::new(flags, tfd.data))
            .map_err(|err| {
                format!(
                    "epoll_ctl(ADD) of target fd {} (events {:#x}): {err}",
                    tfd.tfd, tfd.events
                )
            })?;
    }
    Ok(ep.0)
}

/// struct epoll_event as x86_64 lays it out (packed): events, then data.
fn epoll_event(events: u32, data: u64) -> Vec<u8> {
    let mut b = events.to_le_bytes().to_vec();
    b.extend_from_slice(&data.to_le_bytes());
    b
}

/// Registers the targets of the epolls task `t` is the registering task of; its fds must all
/// be at their numbers already.
pub fn register_targets(
    r: &mut Remote,
    epolls: &EpollTargets,
    t: &TaskImages,
) -> Result<(), InstallError> {
    let pid = t.pid();
    let numbers: BTreeSet<u32> = t.fds.iter().map(|f| f.fd).collect();
    let mut done = BTreeSet::new();
    for fd in t
        .fds
        .iter()
        .filter(|f| f.r#type == FdTypes::Eventpoll as i32)
    {
        let Some((owner, targets)) = epolls.by_id.get(&fd.id) else {
            continue;
        };
        if *owner != pid || !done.insert(fd.id) {
            continue;
        }
        for tfd in targets {
            if !numbers.contains(&tfd.tfd) {
                return Err(task_err(
                    pid,
                    format!(
                        "epoll fd {}: target fd {} is not open in the task, so it cannot be \
                         registered again",
                        fd.fd, tfd.tfd
                    ),
                ));
            }
            let ev = r.arg(&epoll_event(tfd.events, tfd.data))?;
            let got = r.try_call(
                libc::SYS_epoll_ctl,
                &[
                    u64::from(fd.fd),
                    libc::EPOLL_CTL_ADD as u64,
                    u64::from(tfd.tfd),
                    ev,
                ],
            )?;
            if got < 0 {
                return Err(task_err(
                    pid,
                    format!(
                        "epoll fd {}: epoll_ctl(ADD) of target fd {} (events {:#x}): {}",
                        fd.fd,
                        tfd.tfd,
                        tfd.events,
                        nix::errno::Errno::from_raw(-got as i32)
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_laid_out_packed() {
        let b = epoll_event(0x8000_0001, 0x1122_3344_5566_7788);
        assert_eq!(b.len(), 12);
        assert_eq!(&b[..4], &[1, 0, 0, 0x80]);
        assert_eq!(b[4], 0x88);
    }
}
