//! File locks in a dump (`-l/--file-locks`): flock, POSIX and OFD locks and leases, read from
//! the `lock:` lines of each fd's fdinfo. The kernel shows a lock on an fd when it was taken
//! through that fd's open file description and is owned by that description (flock, OFD,
//! lease) or by the task's fd table (POSIX). Each lock is recorded once, for the first task
//! and fd seen that shows it, in `file-locks.img`; restore takes it again through that fd.
//! Without `--file-locks` a task holding a lock makes the dump fail.

use std::collections::BTreeSet;
use std::path::Path;

use criu_procfs::{FileLock, LockKind, LockMode, LockType};
use criu_proto::images::FileLockEntry;

/// `flag` values of a lock entry (CRIU's lock kinds).
pub const FL_POSIX: u32 = 1;
pub const FL_FLOCK: u32 = 2;
pub const FL_OFD: u32 = 4;
pub const FL_LEASE: u32 = 8;
/// Added to a lease's type while it is being broken.
pub const LEASE_BREAKING: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "pid {pid}: fd {fd}: holds a file lock ({what}); dump with --file-locks (-l) to keep it"
    )]
    NeedsOption { pid: i32, fd: i32, what: String },
    #[error("pid {pid}: fd {fd}: {what} is not supported by this dump")]
    Unsupported { pid: i32, fd: i32, what: String },
    #[error("pid {pid}: fd {fd}: cannot read its locks from fdinfo: {source}")]
    Fdinfo {
        pid: i32,
        fd: i32,
        source: criu_procfs::ProcError,
    },
}

/// Records the locks held through `pid`'s `fd`, whose description has id `file_id`, for a
/// kind whose dump did not read them (any file can carry a flock or a POSIX lock: a memfd, a
/// FIFO, a socket...); regular files and directories note theirs themselves.
pub fn note_fd(
    pid: i32,
    fd: i32,
    file_id: u32,
    table: &std::sync::Mutex<crate::table::FileTable>,
) -> Result<(), LockError> {
    let info = criu_procfs::read_fdinfo(pid, fd).map_err(|source| LockError::Fdinfo {
        pid,
        fd,
        source,
    })?;
    if info.locks.is_empty() {
        return Ok(());
    }
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    let allowed = t.opts.file_locks;
    t.locks.note(pid, fd, file_id, &info.locks, allowed)
}

/// The locks of one dump, in the order found.
#[derive(Debug, Default)]
pub struct Locks {
    entries: Vec<FileLockEntry>,
    /// Locks already recorded: (file id, flag, owner pid for POSIX, start, len, type).
    seen: BTreeSet<(u32, u32, i32, i64, i64, u32)>,
}

impl Locks {
    pub fn entries(&self) -> &[FileLockEntry] {
        &self.entries
    }

    /// Records the locks `info` shows on `pid`'s fd `fd`, whose description has id `file_id`.
    /// A lock seen again through another fd of the same description (dup, fork) is skipped.
    pub fn note(
        &mut self,
        pid: i32,
        fd: i32,
        file_id: u32,
        locks: &[FileLock],
        allowed: bool,
    ) -> Result<(), LockError> {
        // The image names the task as it sees itself (in its own pid namespace).
        let seen = if locks.is_empty() {
            pid
        } else {
            criu_procfs::pid_seen_by(pid, pid).unwrap_or(pid)
        };
        for l in locks.iter().filter(|l| !l.blocked) {
            if !allowed {
                return Err(LockError::NeedsOption {
                    pid,
                    fd,
                    what: describe(l),
                });
            }
            let entry =
                entry(seen, fd, l).map_err(|what| LockError::Unsupported { pid, fd, what })?;
            // A POSIX lock belongs to its process; the others to the description.
            let owner = if entry.flag == FL_POSIX { pid } else { 0 };
            let key = (
                file_id,
                entry.flag,
                owner,
                entry.start,
                entry.len,
                entry.r#type,
            );
            if self.seen.insert(key) {
                self.entries.push(entry);
            }
        }
        Ok(())
    }
}

fn describe(l: &FileLock) -> String {
    let kind = match &l.kind {
        LockKind::Flock => "flock",
        LockKind::Posix => "POSIX",
        LockKind::Ofd => "OFD",
        LockKind::Lease => "lease",
        LockKind::Access => "access",
        LockKind::Other(s) => s.as_str(),
    };
    let end = l.end.map_or("EOF".to_string(), |e| e.to_string());
    format!("{kind} {:?} {}-{end}", l.lock_type, l.start)
}

/// The image entry of lock `l` shown on `pid`'s fd `fd`, or why it cannot be kept.
pub fn entry(pid: i32, fd: i32, l: &FileLock) -> Result<FileLockEntry, String> {
    let flag = match l.kind {
        LockKind::Posix => FL_POSIX,
        LockKind::Flock => FL_FLOCK,
        LockKind::Ofd => FL_OFD,
        LockKind::Lease => FL_LEASE,
        _ => return Err(format!("a lock of kind {}", describe(l))),
    };
    let mut ty = match l.lock_type {
        LockType::Read => libc::F_RDLCK as u32,
        LockType::Write => libc::F_WRLCK as u32,
        LockType::Unlock => libc::F_UNLCK as u32,
        LockType::ReadWrite => return Err(format!("a mandatory lock ({})", describe(l))),
    };
    match l.mode {
        LockMode::Advisory => {}
        LockMode::Active if flag == FL_LEASE => {}
        // The type shown is the one the lease is being broken to.
        LockMode::Breaking if flag == FL_LEASE => ty |= LEASE_BREAKING,
        _ => return Err(format!("a lock in mode {:?} ({})", l.mode, describe(l))),
    }
    let start = i64::try_from(l.start).map_err(|_| format!("a lock starting at {}", l.start))?;
    // The image keeps a length; 0 means "to the end of the file".
    let len = match l.end {
        None => 0,
        Some(end) => i64::try_from(end)
            .ok()
            .and_then(|e| e.checked_add(1))
            .and_then(|e| e.checked_sub(start))
            .ok_or_else(|| format!("a lock ending at {end}"))?,
    };
    Ok(FileLockEntry {
        flag,
        r#type: ty,
        pid,
        fd,
        start,
        len,
    })
}

/// Writes file-locks.img when the dump has locks.
pub fn write_file_locks(dir: &Path, locks: &Locks) -> criu_proto::Result<()> {
    if locks.entries.is_empty() {
        return Ok(());
    }
    let mut w = criu_proto::ImageWriter::create(dir, &criu_proto::ImageKind::FILE_LOCKS, None)?;
    for e in &locks.entries {
        w.write(e)?;
    }
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> FileLock {
        criu_procfs::locks::parse_lock_line(line.as_bytes(), 1).unwrap()
    }

    #[test]
    fn lock_lines_become_entries_as_criu_writes_them() {
        let e = entry(7, 3, &parse("1: POSIX ADVISORY WRITE 7 fe:00:12 10 29")).unwrap();
        assert_eq!(
            (e.flag, e.r#type, e.pid, e.fd, e.start, e.len),
            (FL_POSIX, 1, 7, 3, 10, 20)
        );
        let e = entry(7, 4, &parse("1: FLOCK ADVISORY READ 7 fe:00:12 0 EOF")).unwrap();
        assert_eq!((e.flag, e.r#type, e.start, e.len), (FL_FLOCK, 0, 0, 0));
        let e = entry(7, 4, &parse("1: OFDLCK ADVISORY READ -1 fe:00:12 5 5")).unwrap();
        assert_eq!((e.flag, e.pid, e.start, e.len), (FL_OFD, 7, 5, 1));
        let e = entry(7, 4, &parse("1: LEASE ACTIVE WRITE 7 fe:00:12 0 EOF")).unwrap();
        assert_eq!((e.flag, e.r#type), (FL_LEASE, 1));
        let e = entry(7, 4, &parse("1: LEASE BREAKING UNLCK 7 fe:00:12 0 EOF")).unwrap();
        assert_eq!((e.flag, e.r#type), (FL_LEASE, 2 | LEASE_BREAKING));
        assert!(entry(7, 4, &parse("1: POSIX BREAKING READ 7 fe:00:12 0 EOF")).is_err());
    }

    #[test]
    fn a_lock_is_kept_once_per_description_and_posix_once_per_process() {
        let mut locks = Locks::default();
        let flock = [parse("1: FLOCK ADVISORY WRITE 7 fe:00:12 0 EOF")];
        let posix = [parse("1: POSIX ADVISORY READ 7 fe:00:12 0 9")];
        locks.note(7, 3, 1, &flock, true).unwrap();
        locks.note(8, 3, 1, &flock, true).unwrap();
        locks.note(7, 4, 2, &posix, true).unwrap();
        locks.note(7, 5, 2, &posix, true).unwrap();
        locks.note(8, 4, 2, &posix, true).unwrap();
        let got: Vec<_> = locks.entries().iter().map(|e| (e.pid, e.fd)).collect();
        assert_eq!(got, [(7, 3), (7, 4), (8, 4)]);
        let refused = locks.note(9, 1, 3, &flock, false).unwrap_err();
        assert!(refused.to_string().contains("--file-locks"), "{refused}");
    }
}
