//! The file steps of a rebuild: fds at their numbers, cwd and root.

use criu_proto::images::FdinfoEntry;
use criu_tracee::remote::Remote;
use criu_tracee::FdChannel;

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
    channel: &FdChannel,
) -> Result<(), InstallError> {
    let pid = t.pid();
    let mut own_proc_files = Vec::new();
    let mut made_fds = Vec::with_capacity(t.fds.len());
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
        made_fds.push((fd, made));
    }
    if made_fds.len() < BATCH_MIN || !place_batched(r, t, &mut made_fds)? {
        for (fd, made) in made_fds {
            let opened = channel.take(r, made)?;
            place_fd(r, opened, fd)?;
        }
    }
    // Last, once the fds they may name are back.
    for (fd, reg) in own_proc_files {
        let opened = crate::regular::restore::open_in_task(r, reg)?;
        place_fd(r, opened, fd)?;
    }
    crate::locks::restore::take_locks(r, shared.locks.of(pid), t, false)?;
    crate::tty::pty::set_controlling(r, &shared.ctty, t)?;
    crate::epoll::restore::register_targets(r, &shared.epolls, t)?;
    crate::fown::restore::point_async_at_fds(r, all, shared, t)?;
    Ok(())
}

/// A task with at least this many fds takes them in batches (see [`place_batched`]).
const BATCH_MIN: usize = 16;

/// Puts `made` (each fd with criu's description for it) at their numbers in batches: sent in
/// fd order, the holes below the highest filled by stand-ins (the first description), they
/// come in by one injected recvmsg per 253 and land on their numbers, since the kernel gives
/// the lowest free ones; then the stand-ins go (one close_range per run of them) and
/// close-on-exec comes back where it was set. False, with nothing changed, when the numbers
/// are too sparse for it (more stand-ins than fds) or one did not land on its number (it was
/// taken): the caller places them one by one then.
fn place_batched(
    r: &mut Remote,
    t: &TaskImages,
    made: &mut [(&FdinfoEntry, std::os::fd::RawFd)],
) -> Result<bool, InstallError> {
    made.sort_by_key(|(fd, _)| fd.fd);
    let Some(&(last, _)) = made.last() else {
        return Ok(true);
    };
    let count = last.fd as usize + 1;
    if count - made.len() > made.len() {
        return Ok(false);
    }
    let stand_in = made[0].1;
    let mut sources = vec![stand_in; count];
    let mut wanted = vec![None; count];
    for &(fd, src) in made.iter() {
        sources[fd.fd as usize] = src;
        wanted[fd.fd as usize] = Some(fd);
    }
    let batch = criu_tracee::FdBatch::open(r, t.host_pid(), count as u64)?;
    let got = batch.receive(r, &sources)?;
    batch.close(r)?;
    if got.iter().enumerate().any(|(i, &g)| g != i as u64) {
        for g in got {
            r.close(g)?;
        }
        return Ok(false);
    }
    let mut i = 0;
    while i < count {
        let Some(fd) = wanted[i] else {
            let end = (i..count).find(|&j| wanted[j].is_some()).unwrap_or(count);
            r.call(
                "close_range",
                libc::SYS_close_range,
                &[i as u64, end as u64 - 1, 0],
            )?;
            i = end;
            continue;
        };
        if fd.flags & libc::FD_CLOEXEC as u32 != 0 {
            r.call(
                "fcntl(F_SETFD)",
                libc::SYS_fcntl,
                &[i as u64, libc::F_SETFD as u64, libc::FD_CLOEXEC as u64],
            )?;
        }
        i += 1;
    }
    Ok(true)
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

/// The task's way to take the fds criu made for it (see `FdChannel`), above every fd number
/// the task will use, so that no restored fd lands on it.
pub fn open_fd_channel(r: &mut Remote, t: &TaskImages) -> Result<FdChannel, InstallError> {
    let above = t
        .fds
        .iter()
        .map(|fd| u64::from(fd.fd) + 1)
        .max()
        .unwrap_or(0);
    Ok(FdChannel::open(r, t.host_pid(), above)?)
}

/// The task's leases, once its credentials are back (see `take_locks`).
pub fn take_leases(
    r: &mut Remote,
    shared: &SharedFiles,
    t: &TaskImages,
) -> Result<(), InstallError> {
    crate::locks::restore::take_locks(r, shared.locks.of(t.pid()), t, true)
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
