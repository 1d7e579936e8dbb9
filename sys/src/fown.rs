//! The owner of an open file description (who gets SIGIO/SIGURG, and which signal): the
//! fcntl commands nix does not wrap, and a uid change for the calling thread only, so that
//! F_SETOWN_EX records the uids a dump saw without touching criu's other threads.

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

use crate::ret::check;

/// fcntl commands from linux/fcntl.h.
const F_SETSIG: libc::c_int = 10;
const F_GETSIG: libc::c_int = 11;
const F_SETOWN_EX: libc::c_int = 15;
const F_GETOWN_EX: libc::c_int = 16;
const F_GETOWNER_UIDS: libc::c_int = 17;

/// Owner kinds of `struct f_owner_ex`.
pub const F_OWNER_TID: i32 = 0;
pub const F_OWNER_PID: i32 = 1;
pub const F_OWNER_PGRP: i32 = 2;

/// `struct f_owner_ex`: the owner kind (F_OWNER_TID 0, F_OWNER_PID 1, F_OWNER_PGRP 2) and id.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OwnerEx {
    pub kind: i32,
    pub pid: i32,
}

/// F_GETOWN_EX.
pub fn owner(fd: impl AsFd) -> Result<OwnerEx, Errno> {
    let mut o = OwnerEx::default();
    // SAFETY: F_GETOWN_EX writes one struct f_owner_ex, which `o` is (repr(C)).
    check(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_GETOWN_EX, &mut o as *mut OwnerEx) })?;
    Ok(o)
}

/// F_SETOWN_EX.
pub fn set_owner(fd: impl AsFd, o: OwnerEx) -> Result<(), Errno> {
    // SAFETY: F_SETOWN_EX reads one struct f_owner_ex, which `o` is (repr(C)).
    check(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_SETOWN_EX, &o as *const OwnerEx) })?;
    Ok(())
}

/// F_GETOWNER_UIDS: (uid, euid) of whoever set the owner.
pub fn owner_uids(fd: impl AsFd) -> Result<(u32, u32), Errno> {
    let mut uids = [0u32; 2];
    // SAFETY: F_GETOWNER_UIDS writes two u32 into `uids`.
    check(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_GETOWNER_UIDS, uids.as_mut_ptr()) })?;
    Ok((uids[0], uids[1]))
}

/// F_GETSIG: the signal sent instead of SIGIO (0 = SIGIO).
pub fn signal(fd: impl AsFd) -> Result<i32, Errno> {
    // SAFETY: F_GETSIG takes no argument and touches no memory of ours.
    check(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_GETSIG) })
}

/// F_SETSIG.
pub fn set_signal(fd: impl AsFd, sig: i32) -> Result<(), Errno> {
    // SAFETY: F_SETSIG takes an integer and touches no memory of ours.
    check(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_SETSIG, sig) })?;
    Ok(())
}

/// setresuid for the calling thread only (the raw syscall; libc's wrapper changes every
/// thread). `u32::MAX` leaves an id as it is.
pub fn set_thread_uids(ruid: u32, euid: u32, suid: u32) -> Result<(), Errno> {
    // SAFETY: setresuid takes only integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_setresuid,
            ruid as libc::c_long,
            euid as libc::c_long,
            suid as libc::c_long,
        )
    };
    crate::ret::check(r)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_signal_round_trip() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(owner(&r).unwrap(), OwnerEx::default());
        assert_eq!(signal(&r).unwrap(), 0);
        let me = OwnerEx {
            kind: F_OWNER_PID,
            pid: std::process::id() as i32,
        };
        set_owner(&r, me).unwrap();
        set_signal(&r, libc::SIGUSR2).unwrap();
        assert_eq!(owner(&r).unwrap(), me);
        assert_eq!(signal(&r).unwrap(), libc::SIGUSR2);
        let uid = nix::unistd::getuid().as_raw();
        let euid = nix::unistd::geteuid().as_raw();
        assert_eq!(owner_uids(&r).unwrap(), (uid, euid));
    }
}
