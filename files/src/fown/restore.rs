//! The owner of an open file description (F_SETSIG, F_SETOWN_EX), set on criu's description:
//! every task's copy shares it. The signal is set when the description is opened; the owner
//! only once every task exists, since F_SETOWN_EX refuses a pid that does not exist yet.

use std::os::fd::AsFd;

use criu_proto::images::FownEntry;

#[derive(Debug, thiserror::Error)]
#[error("file {id}: file owner (pid {pid}, signal {signum}): {what}: {errno}")]
pub struct FownError {
    pub id: u32,
    pub pid: u32,
    pub signum: u32,
    pub what: &'static str,
    pub errno: nix::errno::Errno,
}

fn err(
    id: u32,
    fown: &FownEntry,
    what: &'static str,
) -> impl FnOnce(nix::errno::Errno) -> FownError {
    let (pid, signum) = (fown.pid, fown.signum);
    move |errno| FownError {
        id,
        pid,
        signum,
        what,
        errno,
    }
}

/// Terminals are opened outside `SharedFiles::create` (see `tty`, `pty`): their owners are
/// put back once they are all handed out.
pub fn restore_tty_owners(
    images: &criu_proto::dump_images::DumpImages,
    shared: &mut crate::registry::SharedFiles,
) -> Result<(), crate::registry::SharedError> {
    for id in images.fd_ids_of_type(criu_proto::images::FdTypes::Tty) {
        if let Some(t) = images.files.get(&id).and_then(|f| f.tty.as_ref()) {
            shared.restore_fown_of(id, &t.fown)?;
        }
    }
    Ok(())
}

/// The status flags the dump kept for `f`, for the kinds that can signal on I/O.
fn status_flags(f: &criu_proto::images::FileEntry) -> Option<u32> {
    f.reg
        .as_ref()
        .map(|x| x.flags)
        .or(f.pipe.as_ref().map(|x| x.flags))
        .or(f.usk.as_ref().map(|x| x.flags))
        .or(f.ify.as_ref().map(|x| x.flags))
        .or(f.ffy.as_ref().map(|x| x.flags))
        .or(f.tty.as_ref().map(|x| x.flags))
        .or(f.efd.as_ref().map(|x| x.flags))
        .or(f.sgfd.as_ref().map(|x| x.flags))
        .or(f.tfd.as_ref().map(|x| x.flags))
        .or(f.epfd.as_ref().map(|x| x.flags))
        .or(f.memfd.as_ref().map(|x| x.flags))
}

/// The kernel signals an O_ASYNC description's owner with the fd number O_ASYNC was set
/// through (si_fd): criu set it through its own fd, so each task turns it off and on again
/// through its own numbers once they are in place. Inherited descriptions are left alone.
pub fn point_async_at_fds(
    r: &mut criu_tracee::remote::Remote,
    all: &criu_proto::dump_images::DumpImages,
    shared: &crate::registry::SharedFiles,
    t: &criu_proto::dump_images::TaskImages,
) -> Result<(), crate::InstallError> {
    for fd in &t.fds {
        let flags = all.files.get(&fd.id).and_then(status_flags).unwrap_or(0);
        if flags & libc::O_ASYNC as u32 == 0 || shared.is_inherited(fd.id) {
            continue;
        }
        let n = u64::from(fd.fd);
        // Tasks sharing the description do this at the same time: each one ends with O_ASYNC
        // on, whatever it read in between.
        let now = r.call(
            "fcntl(F_GETFL)",
            libc::SYS_fcntl,
            &[n, libc::F_GETFL as u64],
        )? as u64;
        let off = now & !(libc::O_ASYNC as u64);
        r.call(
            "fcntl(F_SETFL)",
            libc::SYS_fcntl,
            &[n, libc::F_SETFL as u64, off],
        )?;
        r.call(
            "fcntl(F_SETFL)",
            libc::SYS_fcntl,
            &[n, libc::F_SETFL as u64, off | libc::O_ASYNC as u64],
        )?;
    }
    Ok(())
}

/// F_SETSIG on description `id`, if the dump saw a signal other than SIGIO.
pub fn set_signal(id: u32, fd: impl AsFd, fown: &FownEntry) -> Result<(), FownError> {
    if fown.signum == 0 {
        return Ok(());
    }
    criu_sys::fown::set_signal(fd, fown.signum as i32).map_err(err(id, fown, "F_SETSIG"))
}

/// F_SETOWN_EX on description `id`, as the uids the dump saw (the kernel records the
/// setter's uids for its permission check when it signals), switched on this thread only.
pub fn set_owner(id: u32, fd: impl AsFd, fown: &FownEntry) -> Result<(), FownError> {
    if fown.pid == 0 {
        return Ok(());
    }
    let owner = criu_sys::fown::OwnerEx {
        kind: fown.pid_type as i32,
        pid: fown.pid as i32,
    };
    let ids = nix::unistd::getresuid().map_err(err(id, fown, "getresuid"))?;
    let (ruid, euid, suid) = (
        ids.real.as_raw(),
        ids.effective.as_raw(),
        ids.saved.as_raw(),
    );
    if (fown.uid, fown.euid) == (ruid, euid) {
        return criu_sys::fown::set_owner(fd, owner).map_err(err(id, fown, "F_SETOWN_EX"));
    }
    criu_sys::fown::set_thread_uids(fown.uid, fown.euid, u32::MAX).map_err(err(
        id,
        fown,
        "setresuid to the owner's uids",
    ))?;
    let set = criu_sys::fown::set_owner(fd, owner).map_err(err(id, fown, "F_SETOWN_EX"));
    criu_sys::fown::set_thread_uids(ruid, euid, suid).map_err(err(id, fown, "setresuid back"))?;
    // A uid change makes the process undumpable, which would close /proc/self to others.
    nix::sys::prctl::set_dumpable(true).map_err(err(id, fown, "PR_SET_DUMPABLE"))?;
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_and_owner_are_put_back() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let me = std::process::id();
        let ids = nix::unistd::getresuid().unwrap();
        let fown = FownEntry {
            uid: ids.real.as_raw(),
            euid: ids.effective.as_raw(),
            signum: libc::SIGUSR2 as u32,
            pid_type: criu_sys::fown::F_OWNER_PID as u32,
            pid: me,
        };
        set_signal(3, &r, &fown).unwrap();
        set_owner(3, &r, &fown).unwrap();
        assert_eq!(criu_sys::fown::signal(&r).unwrap(), libc::SIGUSR2);
        assert_eq!(
            criu_sys::fown::owner(&r).unwrap(),
            criu_sys::fown::OwnerEx {
                kind: criu_sys::fown::F_OWNER_PID,
                pid: me as i32
            }
        );
        // Nothing recorded, nothing set.
        let (r2, _w2) = nix::unistd::pipe().unwrap();
        set_signal(4, &r2, &FownEntry::default()).unwrap();
        set_owner(4, &r2, &FownEntry::default()).unwrap();
        assert_eq!(criu_sys::fown::owner(&r2).unwrap().pid, 0);
    }

    #[test]
    fn an_owner_that_does_not_exist_is_an_error_naming_the_file() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let ids = nix::unistd::getresuid().unwrap();
        let fown = FownEntry {
            uid: ids.real.as_raw(),
            euid: ids.effective.as_raw(),
            signum: 0,
            pid_type: criu_sys::fown::F_OWNER_PID as u32,
            pid: i32::MAX as u32,
        };
        let e = set_owner(9, &r, &fown).unwrap_err();
        assert_eq!(e.errno, nix::errno::Errno::ESRCH);
        assert!(e.to_string().starts_with("file 9: file owner"), "{e}");
    }
}
