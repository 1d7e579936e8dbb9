//! pidfd at dump: the pid it names (NSpid, innermost; -1 once that process is gone), its inode
//! (pidfds of one process share it), flags and owner. A live target must be a task of the tree,
//! which `verify` checks once every task is collected.

use std::collections::BTreeSet;
use std::sync::Mutex;

use criu_proto::images::{FdTypes, FdinfoEntry, FileEntry, PidfdEntry};

use crate::eventfd::dump::{lock, read_anon_fd, AnonFdError};
use crate::table::{fdinfo, FileTable};

/// PIDFD_THREAD (a pidfd of one thread), which CRIU does not restore either.
const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

/// Live targets seen: (holder pid, fd, target pid).
#[derive(Debug, Default)]
pub struct PidfdTargets(Vec<(i32, i32, i32)>);

#[derive(Debug, thiserror::Error)]
pub enum PidfdError {
    #[error(transparent)]
    AnonFd(#[from] AnonFdError),
    #[error("pid {pid}: fd {fd}: a pidfd of a thread (PIDFD_THREAD) is not supported")]
    Thread { pid: i32, fd: i32 },
    #[error("pid {pid}: fd {fd}: pidfd of pid {target}, which is not in the dumped tree")]
    Outside { pid: i32, fd: i32, target: i32 },
}

pub fn dump_pidfd_fd(
    pid: i32,
    fd: i32,
    table: &Mutex<FileTable>,
) -> Result<FdinfoEntry, PidfdError> {
    let kind = "pidfd";
    let a = read_anon_fd(pid, fd, kind)?;
    let info = a.info.pidfd.as_ref().ok_or(AnonFdError::NoState {
        pid,
        fd,
        kind,
        what: "Pid",
    })?;
    if a.flags & PIDFD_THREAD != 0 {
        return Err(PidfdError::Thread { pid, fd });
    }
    let nspid = if info.pid == -1 {
        -1
    } else {
        info.ns_pid.last().copied().unwrap_or(info.pid)
    };
    let mut t = lock(table);
    if info.pid != -1 {
        t.pidfds.0.push((pid, fd, info.pid));
    }
    let flags = a.flags & !(libc::O_RDWR as u32);
    let ino = a.st.ino as u32;
    let id = t.described(pid, fd, a.st, |id| {
        Ok::<_, AnonFdError>(FileEntry {
            r#type: FdTypes::Pidfd as i32,
            id,
            pidfd: Some(PidfdEntry {
                id,
                ino,
                flags,
                nspid,
                fown: crate::fown::dump::read(pid, fd, a.flags)?,
            }),
            ..Default::default()
        })
    })?;
    Ok(fdinfo(id, fd, a.fd_flags, FdTypes::Pidfd))
}

/// Once every task is collected: each live target is a task of the tree, so that it exists
/// at restore.
pub fn verify(targets: &PidfdTargets, tree: &BTreeSet<i32>) -> Result<(), PidfdError> {
    match targets
        .0
        .iter()
        .find(|(_, _, target)| !tree.contains(target))
    {
        Some(&(pid, fd, target)) => Err(PidfdError::Outside { pid, fd, target }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_pidfd_names_its_pid_and_must_be_in_the_tree() {
        let me = std::process::id() as i32;
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kid = child.id() as i32;
        let pidfd = criu_sys::pidfd::open(kid, 0).unwrap();
        let table = Mutex::new(FileTable::new(Default::default()));
        let e = dump_pidfd_fd(me, pidfd.as_raw_fd(), &table).unwrap();
        let t = table.into_inner().unwrap();
        let p = t.entries()[0].pidfd.unwrap();
        assert_eq!((p.id, p.nspid), (e.id, kid));
        assert!(verify(&t.pidfds, &BTreeSet::from([me, kid])).is_ok());
        let err = verify(&t.pidfds, &BTreeSet::from([me])).unwrap_err();
        assert!(
            err.to_string().contains(&format!("pidfd of pid {kid}")),
            "{err}"
        );
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
    }
}
