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
    let host = t.host_pid();
    let same_pid_ns = criu_procfs::read_ns(host, criu_procfs::NsKind::Pid).ok()
        == criu_procfs::read_ns(std::process::id() as i32, criu_procfs::NsKind::Pid).ok();
    let p = if same_pid_ns {
        r.call(
            "pidfd_open",
            libc::SYS_pidfd_open,
            &[std::process::id() as u64, 0],
        )? as u64
    } else {
        criu_pidfd_by_socket(r, host)?
    };
    let high = r.call(
        "fcntl(F_DUPFD_CLOEXEC)",
        libc::SYS_fcntl,
        &[p, libc::F_DUPFD_CLOEXEC as u64, above],
    )? as u64;
    r.close(p)?;
    Ok(high)
}

/// In a pid namespace of its own the task cannot name criu by pid: criu sends it its pidfd
/// over a socket pair the task makes (criu takes one end with pidfd_getfd).
fn criu_pidfd_by_socket(r: &mut Remote, host: i32) -> Result<u64, InstallError> {
    use criu_tracee::remote::ARG_AT;
    let fail = |what: String| task_err(host, format!("passing criu's pidfd: {what}"));
    let pair_at = r.arg(&[0u8; 8])?;
    let flags = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as u64;
    r.call(
        "socketpair",
        libc::SYS_socketpair,
        &[libc::AF_UNIX as u64, flags, 0, pair_at],
    )?;
    let mut pair = [0u8; 8];
    r.inj.read_data(ARG_AT, &mut pair)?;
    let (a, b) = (
        i32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]),
        i32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]),
    );
    let sent = (|| -> Result<(), String> {
        let mine = criu_sys::pidfd::open(std::process::id() as i32, 0)
            .map_err(|e| format!("pidfd_open of criu: {e}"))?;
        let end = criu_sys::pidfd::take_fd(host, a).map_err(|e| format!("pidfd_getfd: {e}"))?;
        criu_sys::pidfd::send_fd(&end, &mine).map_err(|e| format!("sendmsg: {e}"))
    })();
    // struct msghdr with one iovec of one byte and room for one SCM_RIGHTS fd.
    let (base, data, iov, control, msg) = (r.inj.data_addr(), 64, 128, 192, 256);
    let at = |off: usize| base + (ARG_AT + off) as u64;
    let control_len = 24u64;
    let mut block = vec![0u8; 320];
    block[iov..iov + 16].copy_from_slice(&criu_tracee::remote::words(&[at(data), 1]));
    let hdr = criu_tracee::remote::words(&[0, 0, at(iov), 1, at(control), control_len, 0]);
    block[msg..msg + hdr.len()].copy_from_slice(&hdr);
    r.inj.write_data(ARG_AT, &block)?;
    let got = if sent.is_ok() {
        r.try_call(
            libc::SYS_recvmsg,
            &[b as u64, at(msg), libc::MSG_CMSG_CLOEXEC as u64],
        )?
    } else {
        -1
    };
    r.close(a as u64)?;
    r.close(b as u64)?;
    sent.map_err(fail)?;
    if got < 0 {
        return Err(fail(format!("recvmsg in the task: errno {}", -got)));
    }
    // cmsghdr: len (8), level (4), type (4), then the fd.
    let mut cmsg = [0u8; 20];
    r.inj.read_data(ARG_AT + control, &mut cmsg)?;
    let ty = i32::from_le_bytes([cmsg[12], cmsg[13], cmsg[14], cmsg[15]]);
    if ty != libc::SCM_RIGHTS {
        return Err(fail("no fd came with the message".into()));
    }
    Ok(u64::from(u32::from_le_bytes([
        cmsg[16], cmsg[17], cmsg[18], cmsg[19],
    ])))
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
