//! The file steps of a rebuild: fds at their numbers, cwd and root.

use criu_proto::images::FdinfoEntry;
use criu_tracee::remote::Remote;

use crate::registry::SharedFiles;
use crate::{task_err, InstallError};
use criu_proto::dump_images::{DumpImages, TaskImages};

/// Puts the task's fds at their numbers: each is a copy, taken with pidfd_getfd, of the
/// description criu opened for its file (see `shared`).
pub fn restore_fds(
    r: &mut Remote,
    all: &DumpImages,
    shared: &SharedFiles,
    t: &TaskImages,
    criu_pidfd: u64,
) -> Result<(), InstallError> {
    let pid = t.pid();
    let mut own_proc_files = Vec::new();
    for fd in &t.fds {
        let Some(made) = shared.description(fd.id) else {
            match all.files.get(&fd.id).and_then(|f| f.reg.as_ref()) {
                Some(reg) if crate::regular::restore::in_restored_proc(all, &reg.name) => {
                    own_proc_files.push((fd, reg));
                    continue;
                }
                _ => {
                    return Err(task_err(
                        pid,
                        format!(
                            "fd {}: file {} (type {}) was not restored",
                            fd.fd, fd.id, fd.r#type
                        ),
                    ))
                }
            }
        };
        let opened = r.call(
            "pidfd_getfd",
            libc::SYS_pidfd_getfd,
            &[criu_pidfd, made as u64, 0],
        )? as u64;
        place_fd(r, opened, fd)?;
    }
    // Last, once the fds they may name are back.
    for (fd, reg) in own_proc_files {
        let opened = crate::regular::restore::open_in_task(r, reg)?;
        place_fd(r, opened, fd)?;
    }
    crate::locks::restore::take_locks(r, shared.locks.of(pid), t)?;
    crate::tty::pty::set_controlling(r, &shared.ctty, t)?;
    crate::epoll::restore::register_targets(r, &shared.epolls, t)?;
    crate::fown::restore::point_async_at_fds(r, all, shared, t)?;
    Ok(())
}

/// Moves the task's new fd `opened` (close-on-exec, as pidfd_getfd and the task's own opens
/// make it) to its number, with its own close-on-exec flag.
fn place_fd(r: &mut Remote, opened: u64, fd: &FdinfoEntry) -> Result<(), InstallError> {
    let cloexec = if fd.flags & libc::FD_CLOEXEC as u32 != 0 {
        libc::O_CLOEXEC as u64
    } else {
        0
    };
    if opened != u64::from(fd.fd) {
        r.call("dup3", libc::SYS_dup3, &[opened, u64::from(fd.fd), cloexec])?;
        r.close(opened)?;
    } else if cloexec == 0 {
        r.call(
            "fcntl(F_SETFD)",
            libc::SYS_fcntl,
            &[opened, libc::F_SETFD as u64, u64::from(fd.flags)],
        )?;
    }
    Ok(())
}

/// A pidfd of criu inside the task, above every fd number the task will use, so that no
/// restored fd lands on it. Through it the task takes the objects criu made for it.
pub fn open_criu_pidfd(r: &mut Remote, t: &TaskImages) -> Result<u64, InstallError> {
    let above = t
        .fds
        .iter()
        .map(|fd| u64::from(fd.fd) + 1)
        .max()
        .unwrap_or(0);
    let p = r.call(
        "pidfd_open",
        libc::SYS_pidfd_open,
        &[std::process::id() as u64, 0],
    )? as u64;
    let high = r.call(
        "fcntl(F_DUPFD_CLOEXEC)",
        libc::SYS_fcntl,
        &[p, libc::F_DUPFD_CLOEXEC as u64, above],
    )? as u64;
    r.close(p)?;
    Ok(high)
}

/// cwd and root.
pub fn restore_fs(r: &mut Remote, all: &DumpImages, t: &TaskImages) -> Result<(), InstallError> {
    let pid = t.pid();
    let path_of = |id: u32| {
        all.reg_path(id)
            .map(str::to_string)
            .ok_or_else(|| task_err(pid, format!("fs: file id {id} not in files.img")))
    };
    let root = path_of(t.fs.root_id)?;
    let cwd = path_of(t.fs.cwd_id)?;
    // Both paths are seen from criu's root, so cwd is set before the task's root moves;
    // chroot leaves the cwd where it is.
    let at = r.path(&cwd)?;
    r.call("chdir", libc::SYS_chdir, &[at])?;
    if root != "/" {
        let at = r.path(&root)?;
        r.call("chroot", libc::SYS_chroot, &[at])?;
    }
    if let Some(umask) = t.fs.umask {
        r.call("umask", libc::SYS_umask, &[u64::from(umask)])?;
    }
    Ok(())
}
