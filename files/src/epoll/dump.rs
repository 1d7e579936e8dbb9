//! epoll fds: one files.img entry per epoll description, with its registered targets (fd
//! number, events, data) inside it, as CRIU 4.x writes them. A target's number is the fd it
//! was registered with; if that number no longer holds the file (closed, or reused), the file
//! is looked for among the task's other fds with kcmp, as CRIU does, and recorded under the
//! number it has now. A target open in no fd of the task cannot be restored: the dump fails.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use criu_procfs::fdinfo::EpollTarget;
use criu_proto::images::{EventpollFileEntry, EventpollTfdEntry, FdTypes, FdinfoEntry, FileEntry};

use crate::inotify::dump::read_notify_fd;
use crate::table::{fdinfo, FileTable};

#[derive(Debug, thiserror::Error)]
pub enum EpollError {
    #[error("pid {pid}: epoll fd {fd}: {what}")]
    Epoll { pid: i32, fd: i32, what: String },
    #[error(transparent)]
    Fown(#[from] crate::fown::dump::FownError),
}

fn err(pid: i32, fd: i32, what: impl Into<String>) -> EpollError {
    EpollError::Epoll {
        pid,
        fd,
        what: what.into(),
    }
}

/// The fdinfo entry of `pid`'s epoll `fd`; its description's entry is added on first sight.
pub fn dump_epoll_fd(
    pid: i32,
    fd: i32,
    table: &std::sync::Mutex<FileTable>,
) -> Result<FdinfoEntry, EpollError> {
    dump_with_targets_in(pid, fd, pid, table)
}

/// The fdinfo entry of an epoll in flight in a unix socket queue, which criu holds as its own
/// `fd`. Its targets carry the fd numbers of the task that registered them: they are looked
/// for among the fds of `holder`, the task holding the socket whose queue carries it (the
/// task that gets the epoll back at restore).
pub fn dump_inflight_epoll(
    fd: i32,
    holder: i32,
    table: &std::sync::Mutex<FileTable>,
) -> Result<FdinfoEntry, EpollError> {
    dump_with_targets_in(std::process::id() as i32, fd, holder, table)
}

/// `pid`'s epoll `fd`, its targets found among the fds of `holder`.
fn dump_with_targets_in(
    pid: i32,
    fd: i32,
    holder: i32,
    table: &std::sync::Mutex<FileTable>,
) -> Result<FdinfoEntry, EpollError> {
    let ep = read_notify_fd(pid, fd).map_err(|what| err(pid, fd, what))?;
    let flags = ep.flags;
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    let id = t.described(pid, fd, ep.st, |id| {
        let found = if holder == pid {
            targets(pid, fd, &ep.info.epoll_targets)?
        } else {
            targets_held_by(pid, fd, holder, &ep.info.epoll_targets)?
        };
        let tfd = found
            .into_iter()
            .map(|(n, target)| tfd_entry(id, n, target))
            .collect();
        Ok::<_, EpollError>(FileEntry {
            r#type: FdTypes::Eventpoll as i32,
            id,
            epfd: Some(EventpollFileEntry {
                id,
                flags,
                fown: crate::fown::dump::read(pid, fd, flags)?,
                tfd,
            }),
            ..Default::default()
        })
    })?;
    Ok(fdinfo(id, fd, u32::from(ep.cloexec), FdTypes::Eventpoll))
}

fn tfd_entry(id: u32, n: i32, t: &EpollTarget) -> EventpollTfdEntry {
    EventpollTfdEntry {
        id,
        tfd: n as u32,
        events: t.events,
        data: t.data,
        dev: t.sdev,
        inode: t.ino,
        pos: t.pos.map(|p| p.max(0) as u64),
    }
}

/// Each target with the fd number that holds its file in `pid` now.
fn targets(
    pid: i32,
    efd: i32,
    list: &[EpollTarget],
) -> Result<Vec<(i32, &EpollTarget)>, EpollError> {
    let holds = |t: &EpollTarget, toff: u32, fd: i32| {
        criu_sys::notify::epoll_target_is(pid, efd, t.tfd, toff, fd) == Ok(true)
    };
    find_targets(pid, efd, pid, list, holds, |t| {
        format!(
            "target fd {} (inode {}) is not open in the task any more \
             (kept alive only elsewhere), which this dump does not support",
            t.tfd,
            inode_of(t)
        )
    })
}

/// Each target of `pid`'s epoll `efd` with the fd number that holds its file in `holder`, a
/// task other than `pid`: a copy of the candidate fd is taken into criu to compare it.
fn targets_held_by(
    pid: i32,
    efd: i32,
    holder: i32,
    list: &[EpollTarget],
) -> Result<Vec<(i32, &EpollTarget)>, EpollError> {
    let holds = |t: &EpollTarget, toff: u32, fd: i32| {
        criu_sys::pidfd::take_fd(holder, fd).is_ok_and(|copy| {
            criu_sys::notify::epoll_target_is(pid, efd, t.tfd, toff, copy.as_raw_fd()) == Ok(true)
        })
    };
    find_targets(pid, efd, holder, list, holds, |t| {
        format!(
            "target fd {} (inode {}) of an epoll in flight is not open in pid {holder}, \
             which gets it back: not supported",
            t.tfd,
            inode_of(t)
        )
    })
}

/// The search both of the above make, which differ only in how an fd of `holder` is compared
/// with a target (`holds(target, rank, fd)`) and in the words for a target found nowhere.
fn find_targets(
    pid: i32,
    efd: i32,
    holder: i32,
    list: &[EpollTarget],
    holds: impl Fn(&EpollTarget, u32, i32) -> bool,
    missing: impl Fn(&EpollTarget) -> String,
) -> Result<Vec<(i32, &EpollTarget)>, EpollError> {
    let mut fds: Option<Vec<i32>> = None;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        // Targets registered under one number are told apart by their rank among them.
        let toff = list[..i].iter().filter(|o| o.tfd == t.tfd).count() as u32;
        if holds(t, toff, t.tfd) {
            out.push((t.tfd, t));
            continue;
        }
        // The fd list is read only once some target has moved.
        let fds = match &mut fds {
            Some(f) => f,
            None => fds.insert(fd_numbers(holder, efd)?),
        };
        let Some(n) = fds.iter().copied().find(|&fd| holds(t, toff, fd)) else {
            return Err(err(pid, efd, missing(t)));
        };
        tracing::debug!(
            "pid {pid}: epoll fd {efd}: target fd {} is now fd {n} of pid {holder}",
            t.tfd
        );
        out.push((n, t));
    }
    Ok(out)
}

/// A target's inode for messages ("?" when fdinfo showed none).
fn inode_of(t: &EpollTarget) -> String {
    t.ino.map_or("?".into(), |i| i.to_string())
}

fn fd_numbers(pid: i32, efd: i32) -> Result<Vec<i32>, EpollError> {
    let dir = format!("/proc/{pid}/fd");
    let rd = std::fs::read_dir(&dir).map_err(|e| err(pid, efd, format!("{dir}: {e}")))?;
    Ok(rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// The kernel-encoded device (as fdinfo prints sdev) of a stat result.
pub fn kernel_dev(meta: &std::fs::Metadata) -> u32 {
    let dev = meta.dev();
    (libc::major(dev) << 20) | libc::minor(dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    use std::os::fd::AsRawFd;

    #[test]
    fn targets_and_shared_descriptions() {
        let me = std::process::id() as i32;
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        ep.add(&r, EpollEvent::new(flags, 0xdead_beef)).unwrap();
        let table = std::sync::Mutex::new(FileTable::new(Default::default()));
        let efd = ep.0.as_raw_fd();
        let e = dump_epoll_fd(me, efd, &table).unwrap();
        let dup = ep.0.try_clone().unwrap();
        let e2 = dump_epoll_fd(me, dup.as_raw_fd(), &table).unwrap();
        assert_eq!(
            (e.id, e.flags, e.r#type),
            (e2.id, 1, FdTypes::Eventpoll as i32)
        );
        let t = table.into_inner().unwrap();
        assert_eq!(t.entries().len(), 1);
        let epfd = t.entries()[0].epfd.as_ref().unwrap();
        assert_eq!(epfd.tfd.len(), 1);
        let tfd = &epfd.tfd[0];
        assert_eq!(tfd.tfd, r.as_raw_fd() as u32);
        assert_eq!(tfd.data, 0xdead_beef);
        // The kernel adds EPOLLERR|EPOLLHUP to every registration.
        let always = EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP;
        assert_eq!(tfd.events, (flags | always).bits() as u32);
    }

    #[test]
    fn a_target_moved_to_another_fd_is_found() {
        let me = std::process::id() as i32;
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let moved = r.try_clone().unwrap();
        ep.add(&r, EpollEvent::new(EpollFlags::EPOLLIN, 3)).unwrap();
        let old = r.as_raw_fd();
        drop(r);
        let info = criu_procfs::read_fdinfo(me, ep.0.as_raw_fd()).unwrap();
        let got = targets(me, ep.0.as_raw_fd(), &info.epoll_targets).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.tfd, old);
        assert_eq!(got[0].0, moved.as_raw_fd());
        drop(moved);
        // Closed everywhere now: the kernel drops the registration with the file.
        let info = criu_procfs::read_fdinfo(me, ep.0.as_raw_fd()).unwrap();
        assert!(info.epoll_targets.is_empty());
    }
}
