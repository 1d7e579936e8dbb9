//! The file steps of a rebuild: fds at their numbers, cwd and root.

use criu_proto::images::FdTypes;
use criu_tracee::remote::Remote;

use super::images::{DumpImages, TaskImages};
use super::rebuild::{task_err, RebuildError};
use super::shared::SharedFiles;

/// Reopens the task's files at their numbers: regular files by path at their offset; pipes
/// and other shared objects are taken from criu with pidfd_getfd.
pub fn restore_fds(r: &mut Remote, all: &DumpImages, shared: &SharedFiles, t: &TaskImages, criu_pidfd: u64) -> Result<(), RebuildError> {
    let pid = t.pid();
    for fd in &t.fds {
        let file = all.files.get(&fd.id).ok_or_else(|| task_err(pid, format!("fd {}: file id {} not in files.img", fd.fd, fd.id)))?;
        let opened = match FdTypes::try_from(fd.r#type) {
            Ok(FdTypes::Reg) => {
                let reg = file.reg.as_ref().ok_or_else(|| task_err(pid, format!("fd {}: no reg entry", fd.fd)))?;
                let flags = (reg.flags as i32) & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY);
                let opened = r.open(&reg.name, flags)?;
                if reg.pos != 0 && reg.flags & libc::O_PATH as u32 == 0 {
                    r.call("lseek", libc::SYS_lseek, &[opened, reg.pos, libc::SEEK_SET as u64])?;
                }
                opened
            }
            Ok(FdTypes::Pipe | FdTypes::Tty) => {
                let end = shared
                    .description(fd.id)
                    .ok_or_else(|| task_err(pid, format!("fd {}: description {} (type {}) was not created", fd.fd, fd.id, fd.r#type)))?;
                r.call("pidfd_getfd", libc::SYS_pidfd_getfd, &[criu_pidfd, end as u64, 0])? as u64
            }
            _ => return Err(task_err(pid, format!("fd {}: files of type {} are not restored yet", fd.fd, fd.r#type))),
        };
        let cloexec = if fd.flags & libc::FD_CLOEXEC as u32 != 0 { libc::O_CLOEXEC as u64 } else { 0 };
        if opened != u64::from(fd.fd) {
            r.call("dup3", libc::SYS_dup3, &[opened, u64::from(fd.fd), cloexec])?;
            r.close(opened)?;
        } else {
            r.call("fcntl(F_SETFD)", libc::SYS_fcntl, &[opened, libc::F_SETFD as u64, u64::from(fd.flags)])?;
        }
    }
    Ok(())
}

/// A pidfd of criu inside the task, above every fd number the task will use, so that no
/// restored fd lands on it. Through it the task takes the objects criu made for it.
pub fn open_criu_pidfd(r: &mut Remote, t: &TaskImages) -> Result<u64, RebuildError> {
    let above = t.fds.iter().map(|fd| u64::from(fd.fd) + 1).max().unwrap_or(0);
    let p = r.call("pidfd_open", libc::SYS_pidfd_open, &[std::process::id() as u64, 0])? as u64;
    let high = r.call("fcntl(F_DUPFD_CLOEXEC)", libc::SYS_fcntl, &[p, libc::F_DUPFD_CLOEXEC as u64, above])? as u64;
    r.close(p)?;
    Ok(high)
}

/// cwd and root.
pub fn restore_fs(r: &mut Remote, all: &DumpImages, t: &TaskImages) -> Result<(), RebuildError> {
    let pid = t.pid();
    let path_of = |id: u32| all.reg_path(id).map(str::to_string).ok_or_else(|| task_err(pid, format!("fs: file id {id} not in files.img")));
    let root = path_of(t.fs.root_id)?;
    let cwd = path_of(t.fs.cwd_id)?;
    if root != "/" {
        let at = r.path(&root)?;
        r.call("chroot", libc::SYS_chroot, &[at])?;
    }
    let at = r.path(&cwd)?;
    r.call("chdir", libc::SYS_chdir, &[at])?;
    if let Some(umask) = t.fs.umask {
        r.call("umask", libc::SYS_umask, &[u64::from(umask)])?;
    }
    Ok(())
}
