//! eventfd at dump: its counter and status flags, from fdinfo. Also the reading shared by the
//! other anonymous-inode fds (signalfd, timerfd): fdinfo, FD_CLOEXEC and the inode for kcmp.

use std::sync::Mutex;

use criu_procfs::FdInfo;
use criu_proto::images::{EventfdFileEntry, FdTypes, FdinfoEntry, FileEntry};

use crate::table::{fdinfo, FileStat, FileTable};

/// EFD_SEMAPHORE. CRIU's image has no field for it; an eventfd is always O_RDWR, so the
/// O_WRONLY bit (the same value) is free in its flags and carries it.
pub const EFD_SEMAPHORE: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum AnonFdError {
    #[error("pid {pid}: fd {fd}: {kind}: cannot read fdinfo: {source}")]
    Fdinfo {
        pid: i32,
        fd: i32,
        kind: &'static str,
        source: criu_procfs::ProcError,
    },
    #[error("pid {pid}: fd {fd}: {kind}: cannot stat: {source}")]
    Stat {
        pid: i32,
        fd: i32,
        kind: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fown(#[from] crate::fown::dump::FownError),
    #[error("pid {pid}: fd {fd}: {kind}: fdinfo has no {what} lines")]
    NoState {
        pid: i32,
        fd: i32,
        kind: &'static str,
        what: &'static str,
    },
}

/// What every anonymous-inode fd gives: its fdinfo, status flags without O_CLOEXEC, the
/// fdinfo entry's FD_CLOEXEC flag, and the inode (shared by all such files; kcmp tells them
/// apart).
pub struct AnonFd {
    pub info: FdInfo,
    pub flags: u32,
    pub fd_flags: u32,
    pub st: FileStat,
}

pub fn read_anon_fd(pid: i32, fd: i32, kind: &'static str) -> Result<AnonFd, AnonFdError> {
    let info = criu_procfs::read_fdinfo(pid, fd).map_err(|source| AnonFdError::Fdinfo {
        pid,
        fd,
        kind,
        source,
    })?;
    let meta =
        std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).map_err(|source| AnonFdError::Stat {
            pid,
            fd,
            kind,
            source,
        })?;
    let cloexec = libc::O_CLOEXEC as u32;
    Ok(AnonFd {
        flags: info.flags & !cloexec,
        fd_flags: u32::from(info.flags & cloexec != 0),
        st: FileStat::of(&meta),
        info,
    })
}

pub fn lock(table: &Mutex<FileTable>) -> std::sync::MutexGuard<'_, FileTable> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn dump_eventfd_fd(
    pid: i32,
    fd: i32,
    table: &Mutex<FileTable>,
) -> Result<FdinfoEntry, AnonFdError> {
    let kind = "eventfd";
    let a = read_anon_fd(pid, fd, kind)?;
    let efd = a.info.eventfd.as_ref().ok_or(AnonFdError::NoState {
        pid,
        fd,
        kind,
        what: "eventfd-count",
    })?;
    let mut flags = a.flags;
    if efd.semaphore == Some(true) {
        flags |= EFD_SEMAPHORE;
    }
    let counter = efd.count;
    let id = lock(table).described(pid, fd, a.st, |id| {
        Ok::<_, AnonFdError>(FileEntry {
            r#type: FdTypes::Eventfd as i32,
            id,
            efd: Some(EventfdFileEntry {
                id,
                flags,
                fown: crate::fown::dump::read(pid, fd, a.flags)?,
                counter,
            }),
            ..Default::default()
        })
    })?;
    Ok(fdinfo(id, fd, a.fd_flags, FdTypes::Eventfd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::eventfd::{EfdFlags, EventFd};
    use std::os::fd::AsRawFd;

    #[test]
    fn counter_flags_and_sharing_are_dumped() {
        let me = std::process::id() as i32;
        let a = EventFd::from_value_and_flags(5, EfdFlags::EFD_SEMAPHORE | EfdFlags::EFD_NONBLOCK)
            .unwrap();
        let b = EventFd::from_value_and_flags(9, EfdFlags::EFD_CLOEXEC).unwrap();
        let a2 = a.as_fd_dup();
        let table = Mutex::new(FileTable::new(Default::default()));
        let ea = dump_eventfd_fd(me, a.as_raw_fd(), &table).unwrap();
        let eb = dump_eventfd_fd(me, b.as_raw_fd(), &table).unwrap();
        let ea2 = dump_eventfd_fd(me, a2.as_raw_fd(), &table).unwrap();
        assert_eq!(ea.id, ea2.id);
        assert_ne!(ea.id, eb.id);
        assert_eq!((ea.flags, eb.flags), (0, 1));
        let t = table.into_inner().unwrap();
        let efds: Vec<_> = t.entries().iter().map(|e| e.efd.unwrap()).collect();
        assert_eq!(efds.len(), 2);
        assert_eq!(efds[0].counter, 5);
        assert_eq!(
            efds[0].flags,
            libc::O_RDWR as u32 | libc::O_NONBLOCK as u32 | EFD_SEMAPHORE
        );
        assert_eq!((efds[1].counter, efds[1].flags), (9, libc::O_RDWR as u32));
    }

    trait DupFd {
        fn as_fd_dup(&self) -> std::os::fd::OwnedFd;
    }
    impl DupFd for EventFd {
        fn as_fd_dup(&self) -> std::os::fd::OwnedFd {
            std::os::fd::AsFd::as_fd(self).try_clone_to_owned().unwrap()
        }
    }
}
