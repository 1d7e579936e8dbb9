//! File locks at restore (`-l/--file-locks`): each entry of file-locks.img is taken again
//! inside the task that held it, through its fd number, once its fds are in place. POSIX
//! locks must be: they belong to the process. flock and OFD locks and leases belong to the
//! open file description, which the task shares with criu's copy, so taking them in the task
//! is the same as taking them in criu, but it also makes the task the lease's owner (the one
//! told when it is broken), as in the dumped tree.
//! Locks are taken without waiting: at dump they did not conflict, so a conflict now means
//! someone else took the file meanwhile, and the restore fails instead of hanging.

use std::collections::BTreeMap;

use criu_proto::images::FileLockEntry;
use criu_proto::{ImageKind, ImageReader};
use criu_tracee::remote::Remote;

use crate::{task_err, InstallError};
use criu_proto::dump_images::{DumpImages, TaskImages};

/// Lock kinds, as the dump writes them (`flag`).
const FL_POSIX: u32 = 1;
const FL_FLOCK: u32 = 2;
const FL_OFD: u32 = 4;
const FL_LEASE: u32 = 8;
const LEASE_BREAKING: u32 = 4;

/// The locks to take again, by the pid of the task that takes them.
#[derive(Debug, Default)]
pub struct TaskLocks {
    by_pid: BTreeMap<i32, Vec<FileLockEntry>>,
}

impl TaskLocks {
    /// Reads file-locks.img. Without `--file-locks` the locks are left out, as CRIU does.
    pub fn read(images: &DumpImages, file_locks: bool) -> criu_proto::Result<TaskLocks> {
        let mut locks = TaskLocks::default();
        let Some(mut img) = ImageReader::open_if_exists(&images.dir, &ImageKind::FILE_LOCKS, None)?
        else {
            return Ok(locks);
        };
        let entries = img.read_all::<FileLockEntry>()?;
        if !file_locks {
            if !entries.is_empty() {
                tracing::warn!(
                    "the dump holds {} file lock(s); without --file-locks they are not taken again",
                    entries.len()
                );
            }
            return Ok(locks);
        }
        for e in entries {
            locks.by_pid.entry(e.pid).or_default().push(e);
        }
        Ok(locks)
    }

    pub fn of(&self, pid: i32) -> &[FileLockEntry] {
        self.by_pid.get(&pid).map_or(&[], Vec::as_slice)
    }
}

/// `struct flock` as x86_64 lays it out: type, whence, start, len, pid.
fn flock_struct(e: &FileLockEntry, pid: i32) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&(e.r#type as i16).to_le_bytes());
    b.extend_from_slice(&(libc::SEEK_SET as i16).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&e.start.to_le_bytes());
    b.extend_from_slice(&e.len.to_le_bytes());
    b.extend_from_slice(&pid.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b
}

fn describe(e: &FileLockEntry) -> String {
    let kind = match e.flag {
        FL_POSIX => "POSIX lock",
        FL_FLOCK => "flock",
        FL_OFD => "OFD lock",
        FL_LEASE => "lease",
        _ => "lock",
    };
    format!(
        "{kind} (type {}, start {}, len {})",
        e.r#type, e.start, e.len
    )
}

/// `struct f_owner_ex` kinds and the fcntl that sets one.
const F_SETOWN_EX: u64 = 15;
const F_OWNER_PID: i32 = 1;

fn set_owner(r: &mut Remote, fd: u64, pid: i32) -> Result<i64, InstallError> {
    let mut arg = F_OWNER_PID.to_le_bytes().to_vec();
    arg.extend_from_slice(&pid.to_le_bytes());
    let at = r.arg(&arg)?;
    Ok(r.try_call(libc::SYS_fcntl, &[fd, F_SETOWN_EX, at])?)
}

/// A lease that was being broken: the task takes the lease it held before the break (read
/// for a read-only description, write otherwise), then criu opens the file without waiting,
/// which starts the break again (to unlock: opening for writing; to downgrade to read:
/// opening for reading). The owner is cleared meanwhile so that the break signals no one
/// twice, and is the task again after. Returns the first failing syscall's result.
/// `pid` is the task as it sees itself (the owner), `host` as criu sees it (its /proc files).
fn break_lease(
    r: &mut Remote,
    (pid, host): (i32, i32),
    e: &FileLockEntry,
) -> Result<i64, InstallError> {
    let fd = e.fd as u64;
    let flags = r.try_call(libc::SYS_fcntl, &[fd, libc::F_GETFL as u64])?;
    if flags < 0 {
        return Ok(flags);
    }
    let held = if flags as i32 & libc::O_ACCMODE == libc::O_RDONLY {
        libc::F_RDLCK
    } else {
        libc::F_WRLCK
    };
    let ret = r.try_call(libc::SYS_fcntl, &[fd, libc::F_SETLEASE as u64, held as u64])?;
    if ret < 0 {
        return Ok(ret);
    }
    let ret = set_owner(r, fd, 0)?;
    if ret < 0 {
        return Ok(ret);
    }
    let target = (e.r#type & !LEASE_BREAKING) as i32;
    let access = if target == libc::F_RDLCK {
        libc::O_RDONLY
    } else {
        libc::O_WRONLY
    };
    let path = format!("/proc/{host}/fd/{}", e.fd);
    match nix::fcntl::open(
        path.as_str(),
        nix::fcntl::OFlag::from_bits_retain(access | libc::O_NONBLOCK | libc::O_CLOEXEC),
        nix::sys::stat::Mode::empty(),
    ) {
        Err(nix::errno::Errno::EWOULDBLOCK) => {}
        Ok(_) => {
            return Err(task_err(
                pid,
                format!("pid {pid}: fd {}: opening its file broke no lease", e.fd),
            ))
        }
        Err(errno) => return Ok(-(errno as i64)),
    }
    set_owner(r, fd, pid)
}

/// Takes the task's locks again, inside it, through its restored fds.
/// `leases`: only leases, or all but leases. A lease needs the file's owner as fsuid (or
/// CAP_LEASE where a task of a user namespace has none), so leases are taken once the task's
/// credentials are back; the other locks with its fds.
pub fn take_locks(
    r: &mut Remote,
    locks: &[FileLockEntry],
    t: &TaskImages,
    leases: bool,
) -> Result<(), InstallError> {
    let pid = t.pid();
    for e in locks.iter().filter(|e| (e.flag == FL_LEASE) == leases) {
        if !t.fds.iter().any(|f| f.fd as i32 == e.fd) {
            return Err(task_err(
                pid,
                format!("pid {pid}: {}: fd {} is not restored", describe(e), e.fd),
            ));
        }
        let fd = e.fd as u64;
        let ret = match e.flag {
            FL_FLOCK => {
                let op = match e.r#type as i32 {
                    libc::F_RDLCK => libc::LOCK_SH,
                    libc::F_WRLCK => libc::LOCK_EX,
                    _ => continue,
                };
                r.try_call(libc::SYS_flock, &[fd, (op | libc::LOCK_NB) as u64])?
            }
            FL_POSIX | FL_OFD => {
                let (cmd, owner) = if e.flag == FL_POSIX {
                    (libc::F_SETLK, e.pid)
                } else {
                    (libc::F_OFD_SETLK, 0)
                };
                let at = r.arg(&flock_struct(e, owner))?;
                r.try_call(libc::SYS_fcntl, &[fd, cmd as u64, at])?
            }
            FL_LEASE if e.r#type & LEASE_BREAKING != 0 => break_lease(r, (pid, t.host_pid()), e)?,
            FL_LEASE => r.try_call(
                libc::SYS_fcntl,
                &[fd, libc::F_SETLEASE as u64, u64::from(e.r#type)],
            )?,
            other => {
                return Err(task_err(
                    pid,
                    format!("pid {pid}: fd {}: unknown lock kind {other}", e.fd),
                ))
            }
        };
        if ret < 0 {
            return Err(task_err(
                pid,
                format!(
                    "pid {pid}: fd {}: cannot take its {} again: {}",
                    e.fd,
                    describe(e),
                    nix::errno::Errno::from_raw(-ret as i32)
                ),
            ));
        }
        tracing::debug!("pid {pid}: fd {}: {} taken again", e.fd, describe(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flock_struct_matches_libc_layout() {
        use std::mem::offset_of;
        let e = FileLockEntry {
            flag: FL_POSIX,
            r#type: libc::F_WRLCK as u32,
            pid: 42,
            fd: 3,
            start: 10,
            len: 20,
        };
        let b = flock_struct(&e, 42);
        assert_eq!(b.len(), std::mem::size_of::<libc::flock>());
        let field_is = |off: usize, want: &[u8]| assert_eq!(&b[off..off + want.len()], want);
        field_is(offset_of!(libc::flock, l_type), &1i16.to_le_bytes());
        field_is(offset_of!(libc::flock, l_start), &10i64.to_le_bytes());
        field_is(offset_of!(libc::flock, l_len), &20i64.to_le_bytes());
        field_is(offset_of!(libc::flock, l_pid), &42i32.to_le_bytes());
    }
}
